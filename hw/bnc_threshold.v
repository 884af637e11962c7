// bnc_threshold: the integer test of DESIGN §2.5, a = [t*T + sum_k s_k*S_k + c >= 0], on
// signed operands; K masks (multi-level weights) share T and each bring their own S_k and s_k,
// packed K-wide (mask 0 in the low field). The backend hands it per-channel coefficients
// already reduced to the fewest bits that give the interpreter's decision on every reachable
// (T, S). ``value`` is the plane itself (VW bits must hold it), which the output layer uses as
// its accumulator and a multi-threshold compares against each of its thresholds.
// PIPE = 1 registers the products (and c): value and bit_out follow the operands by one
// clock (the multipliers' output register; without it the multiply and the adds are one path).
`default_nettype none
module bnc_threshold #(
    parameter integer TW = 8,   // width of T and each S_k
    parameter integer KW = 8,   // width of t, each s_k and c
    parameter integer K = 1,
    parameter integer VW = TW + KW + 2,
    parameter integer PIPE = 0
) (
    input  wire                 clk,
    input  wire signed [TW-1:0] sum_t,
    input  wire [K*TW-1:0]      sum_s,
    input  wire signed [KW-1:0] coef_t,
    input  wire [K*KW-1:0]      coef_s,
    input  wire signed [KW-1:0] coef_c,
    output wire signed [VW-1:0] value,
    output wire                 bit_out
);
    wire signed [VW-1:0] t = {{(VW-KW){coef_t[KW-1]}}, coef_t};
    wire signed [VW-1:0] c = {{(VW-KW){coef_c[KW-1]}}, coef_c};
    wire signed [VW-1:0] x = {{(VW-TW){sum_t[TW-1]}}, sum_t};
    // part[k] = c + t*T + the first k masks' products (each VW bits: exact modulo 2^VW)
    wire [(K+1)*VW-1:0] part;
    generate
        if (PIPE != 0) begin : pipe
            reg signed [VW-1:0] pt, pc;
            always @(posedge clk) begin
                pt <= t * x;
                pc <= c;
            end
            assign part[VW-1:0] = pc + pt;
        end else begin : comb
            wire unused_clk = clk;
            assign part[VW-1:0] = c + t * x;
        end
    endgenerate
    genvar k;
    generate
        for (k = 0; k < K; k = k + 1) begin : mask
            wire signed [VW-1:0] s = {{(VW-KW){coef_s[k*KW+KW-1]}}, coef_s[k*KW +: KW]};
            wire signed [VW-1:0] y = {{(VW-TW){sum_s[k*TW+TW-1]}}, sum_s[k*TW +: TW]};
            wire signed [VW-1:0] p;
            if (PIPE != 0) begin : pipe
                reg signed [VW-1:0] ps;
                always @(posedge clk) ps <= s * y;
                assign p = ps;
            end else begin : comb
                assign p = s * y;
            end
            assign part[(k+1)*VW +: VW] = part[k*VW +: VW] + p;
        end
    endgenerate
    assign value = part[K*VW +: VW];
    assign bit_out = !value[VW-1];
endmodule
`default_nettype wire
