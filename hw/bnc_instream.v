// bnc_instream: an AXI-Stream slave that writes PIXELS beats, one pixel each, into a frame
// buffer in raster order and hands the frame over after the last one.
`default_nettype none
module bnc_instream #(
    parameter integer W = 8,
    parameter integer PIXELS = 16,
    parameter integer AW = (PIXELS <= 1) ? 1 : $clog2(PIXELS)
) (
    input  wire          clk,
    input  wire          rst,
    input  wire          s_tvalid,
    output wire          s_tready,
    input  wire [W-1:0]  s_tdata,
    input  wire          wr_ready,
    output wire          wr_en,
    output reg  [AW-1:0] wr_addr,
    output wire [W-1:0]  wr_data,
    output wire          wr_done
);
    localparam integer LASTI = PIXELS - 1;
    localparam [AW-1:0] LAST = LASTI[AW-1:0];
    assign s_tready = wr_ready;
    assign wr_en = s_tvalid && wr_ready;
    assign wr_data = s_tdata;
    assign wr_done = wr_en && wr_addr == LAST;
    always @(posedge clk) begin
        if (rst || wr_done) wr_addr <= 0;
        else if (wr_en) wr_addr <= wr_addr + 1'b1;
    end
endmodule
`default_nettype wire
