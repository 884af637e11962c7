// bnc_threshold: the integer test of DESIGN §2.5, a = [t*T + s*S + c >= 0], on signed
// operands. The backend hands it per-channel coefficients already reduced to the fewest
// bits that give the interpreter's decision on every reachable (T, S). ``value`` is the
// plane itself (VW bits must hold it), which the output layer uses as its accumulator.
// PIPE = 1 registers the two products (and c): value and bit_out follow the operands by one
// clock (the multipliers' output register; without it the multiply and the adds are one path).
`default_nettype none
module bnc_threshold #(
    parameter integer TW = 8,   // width of T and S
    parameter integer KW = 8,   // width of t, s and c
    parameter integer VW = TW + KW + 2,
    parameter integer PIPE = 0
) (
    input  wire                 clk,
    input  wire signed [TW-1:0] sum_t,
    input  wire signed [TW-1:0] sum_s,
    input  wire signed [KW-1:0] coef_t,
    input  wire signed [KW-1:0] coef_s,
    input  wire signed [KW-1:0] coef_c,
    output wire signed [VW-1:0] value,
    output wire                 bit_out
);
    wire signed [VW-1:0] t = {{(VW-KW){coef_t[KW-1]}}, coef_t};
    wire signed [VW-1:0] s = {{(VW-KW){coef_s[KW-1]}}, coef_s};
    wire signed [VW-1:0] c = {{(VW-KW){coef_c[KW-1]}}, coef_c};
    wire signed [VW-1:0] x = {{(VW-TW){sum_t[TW-1]}}, sum_t};
    wire signed [VW-1:0] y = {{(VW-TW){sum_s[TW-1]}}, sum_s};
    wire signed [VW-1:0] v;
    generate
        if (PIPE != 0) begin : pipe
            reg signed [VW-1:0] pt, ps, pc;
            always @(posedge clk) begin
                pt <= t * x;
                ps <= s * y;
                pc <= c;
            end
            assign v = pt + ps + pc;
        end else begin : comb
            wire unused_clk = clk;
            assign v = t * x + s * y + c;
        end
    endgenerate
    assign value = v;
    assign bit_out = !v[VW-1];
endmodule
`default_nettype wire
