// bnc_outstream: reads WORDS words of a full frame buffer in address order and sends them as
// an AXI-Stream master (tlast on the frame's last word). A small FIFO absorbs the read
// latency (LAT = 1 or 2 cycles) so the stream runs at one word per cycle while the sink is
// ready.
`default_nettype none
module bnc_outstream #(
    parameter integer W = 64,
    parameter integer WORDS = 16,
    parameter integer LAT = 1,
    parameter integer AW = (WORDS <= 1) ? 1 : $clog2(WORDS)
) (
    input  wire          clk,
    input  wire          rst,
    input  wire          rd_ready,
    output reg  [AW-1:0] rd_addr,
    input  wire [W-1:0]  rd_data,
    output wire          rd_done,
    output wire          m_tvalid,
    input  wire          m_tready,
    output wire [W-1:0]  m_tdata,
    output wire          m_tlast
);
    localparam integer LASTI = WORDS - 1;
    localparam [AW-1:0] LAST = LASTI[AW-1:0];
    wire [2:0] count;
    wire unused_ready;
    reg pending, pending_last, reading;
    reg pend2, pend2_last;  // LAT = 2: the second cycle in flight
    wire arrive = LAT == 2 ? pend2 : pending;
    wire arrive_last = LAT == 2 ? pend2_last : pending_last;
    // Read only while the FIFO has room for every word in flight.
    wire space = {1'b0, count} + {3'b0, pending} + {3'b0, LAT == 2 && pend2} < 4'd4;
    wire unused = unused_ready;
    wire issue = rd_ready && reading && space;
    wire issue_last = issue && rd_addr == LAST;
    assign rd_done = arrive && arrive_last;

    always @(posedge clk) begin
        if (rst) begin
            rd_addr <= 0;
            pending <= 1'b0;
            pending_last <= 1'b0;
            pend2 <= 1'b0;
            pend2_last <= 1'b0;
            reading <= 1'b1;
        end else begin
            pending <= issue;
            pending_last <= issue_last;
            pend2 <= pending;
            pend2_last <= pending_last;
            if (issue) rd_addr <= issue_last ? 0 : rd_addr + 1'b1;
            if (issue_last) reading <= 1'b0;
            else if (rd_done) reading <= 1'b1;
        end
    end

    bnc_fifo #(.W(W + 1), .DEPTH(4)) fifo (
        .clk(clk), .rst(rst),
        .in_valid(arrive), .in_ready(unused_ready), .in_data({arrive_last, rd_data}),
        .out_valid(m_tvalid), .out_ready(m_tready), .out_data({m_tlast, m_tdata}),
        .count(count)
    );
endmodule
`default_nettype wire
