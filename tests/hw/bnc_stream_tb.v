// Test top for cocotb_stream: the input and output ends of a generated design, joined by a
// frame buffer.
`default_nettype none
module bnc_stream_tb #(
    parameter integer W = 12,
    parameter integer WORDS = 7,
    parameter integer BLOCK = 0,
    parameter integer AW = (WORDS <= 1) ? 1 : $clog2(WORDS)
) (
    input  wire         clk,
    input  wire         rst,
    input  wire         s_tvalid,
    output wire         s_tready,
    input  wire [W-1:0] s_tdata,
    output wire         m_tvalid,
    input  wire         m_tready,
    output wire [W-1:0] m_tdata,
    output wire         m_tlast
);
    wire wr_ready, wr_en, wr_done, rd_ready, rd_done;
    wire [AW-1:0] wr_addr, rd_addr;
    wire [W-1:0] wr_data, rd_data;
    bnc_instream #(.W(W), .PIXELS(WORDS)) i (
        .clk(clk), .rst(rst), .s_tvalid(s_tvalid), .s_tready(s_tready), .s_tdata(s_tdata),
        .wr_ready(wr_ready), .wr_en(wr_en), .wr_addr(wr_addr), .wr_data(wr_data),
        .wr_done(wr_done));
    bnc_framebuf #(.W(W), .DEPTH(WORDS), .BLOCK(BLOCK)) f (
        .clk(clk), .rst(rst), .wr_ready(wr_ready), .wr_en(wr_en), .wr_addr(wr_addr),
        .wr_data(wr_data), .wr_done(wr_done), .rd_ready(rd_ready), .rd_addr(rd_addr),
        .rd_data(rd_data), .rd_done(rd_done));
    bnc_outstream #(.W(W), .WORDS(WORDS), .LAT(BLOCK != 0 ? 2 : 1)) o (
        .clk(clk), .rst(rst), .rd_ready(rd_ready), .rd_addr(rd_addr), .rd_data(rd_data),
        .rd_done(rd_done), .m_tvalid(m_tvalid), .m_tready(m_tready), .m_tdata(m_tdata),
        .m_tlast(m_tlast));
endmodule
`default_nettype wire
