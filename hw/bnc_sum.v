// bnc_sum: the sum of N packed W-bit values as a balanced adder tree (popcount when W = 1).
// SIGNED = 1 reads each value as two's complement. Purely combinational.
`default_nettype none
module bnc_sum #(
    parameter integer N = 8,
    parameter integer W = 1,
    parameter integer SIGNED = 0,
    parameter integer OW = W + $clog2(N + 1) + SIGNED
) (
    input  wire [N*W-1:0] values,
    output wire [OW-1:0]  total
);
    localparam integer NP = (N <= 1) ? 1 : (1 << $clog2(N));
    // node[1] is the root; leaves are node[NP .. NP+N-1], padded with zeros.
    wire [OW-1:0] node [1:2*NP-1];
    genvar i;
    generate
        for (i = 0; i < NP; i = i + 1) begin : leaf
            if (i < N) begin : value
                if (SIGNED != 0) begin : s
                    assign node[NP+i] = {{(OW-W){values[i*W+W-1]}}, values[i*W +: W]};
                end else begin : u
                    assign node[NP+i] = {{(OW-W){1'b0}}, values[i*W +: W]};
                end
            end else begin : pad
                assign node[NP+i] = {OW{1'b0}};
            end
        end
        for (i = 1; i < NP; i = i + 1) begin : add
            assign node[i] = node[2*i] + node[2*i+1];
        end
    endgenerate
    assign total = node[1];
endmodule
`default_nettype wire
