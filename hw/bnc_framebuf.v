// bnc_framebuf: a ping-pong frame buffer between two streaming engines.
// The producer writes one frame into the free bank and hands it over with wr_done; the
// consumer reads the full bank (synchronous read, one cycle of latency) and frees it with
// rd_done. Two banks let the producer fill frame n+1 while the consumer reads frame n.
`default_nettype none
module bnc_framebuf #(
    parameter integer W = 8,
    parameter integer DEPTH = 16,
    parameter integer AW = (DEPTH <= 1) ? 1 : $clog2(DEPTH)
) (
    input  wire          clk,
    input  wire          rst,
    output wire          wr_ready,
    input  wire          wr_en,
    input  wire [AW-1:0] wr_addr,
    input  wire [W-1:0]  wr_data,
    input  wire          wr_done,
    output wire          rd_ready,
    input  wire [AW-1:0] rd_addr,
    output reg  [W-1:0]  rd_data,
    input  wire          rd_done
);
    reg [W-1:0] mem [0:2*DEPTH-1];
    reg [1:0] full;
    reg wb, rb;

    assign wr_ready = !full[wb];
    assign rd_ready = full[rb];

    // Bank b holds words [b*DEPTH, (b+1)*DEPTH) of one memory of 2*DEPTH words.
    localparam integer MW = $clog2(2 * DEPTH);
    localparam [MW-1:0] OFF = DEPTH[MW-1:0];
    wire [MW-1:0] wa, ra;
    generate
        if (MW > AW) begin : wide
            assign wa = (wb ? OFF : {MW{1'b0}}) + {{(MW-AW){1'b0}}, wr_addr};
            assign ra = (rb ? OFF : {MW{1'b0}}) + {{(MW-AW){1'b0}}, rd_addr};
        end else begin : one  // DEPTH = 1: the address is always 0
            wire unused_addr = &{1'b0, wr_addr, rd_addr};
            assign wa = wb;
            assign ra = rb;
        end
    endgenerate

    always @(posedge clk) begin
        if (wr_en) mem[wa] <= wr_data;
        rd_data <= mem[ra];
    end

    always @(posedge clk) begin
        if (rst) begin
            full <= 2'b00;
            wb <= 1'b0;
            rb <= 1'b0;
        end else begin
            if (wr_done) begin
                full[wb] <= 1'b1;
                wb <= !wb;
            end
            if (rd_done) begin
                full[rb] <= 1'b0;
                rb <= !rb;
            end
        end
    end
endmodule
`default_nettype wire
