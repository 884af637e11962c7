// bnc_bitpool: max-pool of bits over the taps of one window, fed one tap per cycle.
// A channel ORs its bits, or ANDs them where AND_MASK is set (a max-pool moved past a
// decreasing threshold). Padded taps (tap_in = 0) are ignored.
`default_nettype none
module bnc_bitpool #(
    parameter integer C = 8,
    parameter [C-1:0] AND_MASK = {C{1'b0}}
) (
    input  wire         clk,
    input  wire         en,
    input  wire         tap_in,
    input  wire         first,
    input  wire [C-1:0] x,
    output reg  [C-1:0] pooled
);
    wire [C-1:0] base = first ? AND_MASK : pooled;
    wire [C-1:0] take = {C{tap_in}};
    wire [C-1:0] ored = base | (x & take);
    wire [C-1:0] anded = base & (x | ~take);
    always @(posedge clk) begin
        if (en) pooled <= (AND_MASK & anded) | (~AND_MASK & ored);
    end
endmodule
`default_nettype wire
