// bnc_bitpool: max-pool of bits or codes over the taps of one window, fed one tap per cycle.
// W = 1: a channel ORs its bits, or ANDs them where AND_MASK is set (a max-pool moved past a
// decreasing threshold). W > 1: channel c is the W-bit two's complement code at
// x[c*W +: W]; it keeps the maximum, or the minimum where AND_MASK is set. Padded taps
// (tap_in = 0) are ignored.
`default_nettype none
module bnc_bitpool #(
    parameter integer C = 8,
    parameter integer W = 1,
    parameter [C-1:0] AND_MASK = {C{1'b0}}
) (
    input  wire           clk,
    input  wire           en,
    input  wire           tap_in,
    input  wire           first,
    input  wire [C*W-1:0] x,
    output reg  [C*W-1:0] pooled
);
    generate
        if (W == 1) begin : bits
            wire [C-1:0] base = first ? AND_MASK : pooled;
            wire [C-1:0] take = {C{tap_in}};
            wire [C-1:0] ored = base | (x & take);
            wire [C-1:0] anded = base & (x | ~take);
            always @(posedge clk) begin
                if (en) pooled <= (AND_MASK & anded) | (~AND_MASK & ored);
            end
        end else begin : codes
            reg seen;  // an in-image tap of this window has been taken
            wire [C*W-1:0] nxt;
            genvar c;
            for (c = 0; c < C; c = c + 1) begin : ch
                wire signed [W-1:0] v = x[c*W +: W];
                wire signed [W-1:0] p = pooled[c*W +: W];
                // the window's first in-image tap replaces; a later one wins if larger
                // (smaller where AND_MASK is set)
                wire better = AND_MASK[c] ? (v < p) : (v > p);
                assign nxt[c*W +: W] = (tap_in && (first || !seen || better)) ? v : p;
            end
            always @(posedge clk) begin
                if (en) begin
                    seen <= tap_in || (!first && seen);
                    pooled <= nxt;
                end
            end
        end
    endgenerate
endmodule
`default_nettype wire
