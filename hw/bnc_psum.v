// bnc_psum: bnc_sum in two pipeline stages. The N packed W-bit values are summed in groups
// of GROUP (each a bnc_sum adder tree), the group sums are registered, and their sum leaves
// combinationally: total is the sum of the values one clock before. It cuts the path of
// the weight rows, the ANDs and a wide popcount in two. SIGNED = 1 reads two's complement.
`default_nettype none
module bnc_psum #(
    parameter integer N = 8,
    parameter integer W = 1,
    parameter integer SIGNED = 0,
    parameter integer OW = W + $clog2(N + 1) + SIGNED,
    parameter integer GROUP = 8
) (
    input  wire           clk,
    input  wire [N*W-1:0] values,
    output wire [OW-1:0]  total
);
    localparam integer NG = (N + GROUP - 1) / GROUP;
    localparam integer NW = W + $clog2(GROUP + 1) + SIGNED;
    localparam integer GW = NW < OW ? NW : OW;  // one group's sum (the total fits OW bits)
    localparam integer TW = GW < OW ? OW : GW + 1;  // the groups' adder tree, then OW bits
    reg [NG*GW-1:0] groups;
    genvar i;
    generate
        for (i = 0; i < NG; i = i + 1) begin : group
            localparam integer LO = i * GROUP;
            localparam integer NI = (N - LO < GROUP) ? N - LO : GROUP;
            wire [GW-1:0] part;
            bnc_sum #(.N(NI), .W(W), .SIGNED(SIGNED), .OW(GW)) sum (
                .values(values[LO*W +: NI*W]), .total(part)
            );
            always @(posedge clk) groups[i*GW +: GW] <= part;
        end
    endgenerate
    /* verilator lint_off UNUSEDSIGNAL */
    wire [TW-1:0] sum;
    /* verilator lint_on UNUSEDSIGNAL */
    bnc_sum #(.N(NG), .W(GW), .SIGNED(SIGNED), .OW(TW)) tree (.values(groups), .total(sum));
    assign total = sum[OW-1:0];
endmodule
`default_nettype wire
