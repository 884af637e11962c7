// bnc_sumpool: the sum over the taps of one window per channel, fed one tap per cycle (a
// global average pool whose division the next layer folds into its coefficients). Channel c
// of x is a bit standing for +1 / -1 (W = 1) or the W-bit two's complement code at
// x[c*W +: W]; each sum is OW bits (two's complement). Padded taps (tap_in = 0) add nothing.
`default_nettype none
module bnc_sumpool #(
    parameter integer C = 8,
    parameter integer W = 1,
    parameter integer OW = 8
) (
    input  wire            clk,
    input  wire            en,
    input  wire            tap_in,
    input  wire            first,
    input  wire [C*W-1:0]  x,
    output reg  [C*OW-1:0] pooled
);
    wire [C*OW-1:0] nxt;
    genvar c;
    generate
        for (c = 0; c < C; c = c + 1) begin : ch
            wire signed [OW-1:0] v;
            if (W == 1) begin : bit_value
                assign v = x[c] ? {{(OW-1){1'b0}}, 1'b1} : {OW{1'b1}};
            end else begin : code
                assign v = {{(OW-W){x[c*W+W-1]}}, x[c*W +: W]};
            end
            wire signed [OW-1:0] base = first ? {OW{1'b0}} : pooled[c*OW +: OW];
            assign nxt[c*OW +: OW] = tap_in ? base + v : base;
        end
    endgenerate
    always @(posedge clk) begin
        if (en) pooled <= nxt;
    end
endmodule
`default_nettype wire
