// bnc_framebuf: a ping-pong frame buffer between two streaming engines.
// The producer writes one frame into the free bank and hands it over with wr_done; the
// consumer reads the full bank (synchronous read) and frees it with
// rd_done. Two banks let the producer fill frame n+1 while the consumer reads frame n.
// BLOCK = 1 asks synthesis for block RAM (ram_style) and reads in two cycles (the RAM's
// output register: a block RAM's bare clock-to-out is slow); else it picks (small ones go to
// LUTs) and reads in one.
`default_nettype none
module bnc_framebuf #(
    parameter integer W = 8,
    parameter integer DEPTH = 16,
    parameter integer BLOCK = 0,
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
    reg [1:0] full;
    reg wb, rb;

    assign wr_ready = !full[wb];
    assign rd_ready = full[rb];

    // Bank b holds words [b*BANK, b*BANK + DEPTH) of one memory of 2*BANK words. BANK is
    // DEPTH rounded up to a power of two (the bank bit tops the address: no adder) where
    // that costs no memory (a power of two already, or block RAM, which comes in 512-word
    // blocks), else DEPTH (an adder per port).
    localparam integer POW = ((DEPTH == (1 << AW)) || (BLOCK != 0 && DEPTH > 1)) ? 1 : 0;
    localparam integer BANK = (POW != 0) ? (1 << AW) : DEPTH;
    localparam integer MW = $clog2(2 * BANK);
    wire [MW-1:0] wa, ra;
    generate
        if (POW != 0 && MW > AW) begin : pow2
            assign wa = {wb, wr_addr};
            assign ra = {rb, rd_addr};
        end else if (MW > AW) begin : wide
            localparam [MW-1:0] OFF = BANK[MW-1:0];
            assign wa = (wb ? OFF : {MW{1'b0}}) + {{(MW-AW){1'b0}}, wr_addr};
            assign ra = (rb ? OFF : {MW{1'b0}}) + {{(MW-AW){1'b0}}, rd_addr};
        end else begin : one  // DEPTH = 1: the address is always 0
            wire unused_addr = &{1'b0, wr_addr, rd_addr};
            assign wa = wb;
            assign ra = rb;
        end
    endgenerate

    generate
        if (BLOCK != 0) begin : block
            (* ram_style = "block" *) reg [W-1:0] mem [0:2*BANK-1];
            reg [W-1:0] rd_q;  // the block RAM's output register: two cycles of read latency
            always @(posedge clk) begin
                if (wr_en) mem[wa] <= wr_data;
                rd_q <= mem[ra];
                rd_data <= rd_q;
            end
        end else begin : any
            reg [W-1:0] mem [0:2*BANK-1];
            always @(posedge clk) begin
                if (wr_en) mem[wa] <= wr_data;
                rd_data <= mem[ra];
            end
        end
    endgenerate

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
