// bnc_framebuf: a ring of frame banks between two streaming engines (ping-pong at BANKS = 2).
// The producer writes one frame into the free bank and hands it over with wr_done; the
// consumer reads the oldest full bank (synchronous read) and frees it with rd_done. BANKS
// banks let the producer run BANKS - 1 frames ahead of the consumer: a shortcut's copy is as
// deep as the frames in flight on the path it skips.
// BLOCK = 1 asks synthesis for block RAM (ram_style) and reads in two cycles (the RAM's
// output register: a block RAM's bare clock-to-out is slow); else it picks (small ones go to
// LUTs) and reads in one.
`default_nettype none
module bnc_framebuf #(
    parameter integer W = 8,
    parameter integer DEPTH = 16,
    parameter integer BLOCK = 0,
    parameter integer BANKS = 2,
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
    localparam integer BW = (BANKS <= 2) ? 1 : $clog2(BANKS);
    localparam [BW-1:0] LASTB = BANKS[BW-1:0] - 1'b1;
    reg [BANKS-1:0] full;
    reg [BW-1:0] wb, rb;

    assign wr_ready = !full[wb];
    assign rd_ready = full[rb];

    // Bank b holds words [b*BANK, b*BANK + DEPTH) of one memory of BANKS*BANK words. BANK is
    // DEPTH rounded up to a power of two (the bank number tops the address: no adder) where
    // that costs no memory (a power of two already, or block RAM, which comes in 512-word
    // blocks) and BANKS is a power of two, else DEPTH (an adder per port, its offset kept in
    // a register).
    localparam integer BPOW = (BANKS == (1 << BW)) ? 1 : 0;
    localparam integer POW = (BPOW != 0 && ((DEPTH == (1 << AW)) || (BLOCK != 0 && DEPTH > 1))) ? 1 : 0;
    localparam integer BANK = (POW != 0) ? (1 << AW) : DEPTH;
    localparam integer MW = $clog2(BANKS * BANK);
    wire [MW-1:0] wa, ra;
    generate
        if (POW != 0 && MW > AW) begin : pow2
            assign wa = {wb, wr_addr};
            assign ra = {rb, rd_addr};
        end else if (MW > AW) begin : wide
            localparam [MW-1:0] STEP = BANK[MW-1:0];
            reg [MW-1:0] woff, roff;  // the first word of bank wb, rb
            always @(posedge clk) begin
                if (rst) begin
                    woff <= {MW{1'b0}};
                    roff <= {MW{1'b0}};
                end else begin
                    if (wr_done) woff <= wb == LASTB ? {MW{1'b0}} : woff + STEP;
                    if (rd_done) roff <= rb == LASTB ? {MW{1'b0}} : roff + STEP;
                end
            end
            assign wa = woff + {{(MW-AW){1'b0}}, wr_addr};
            assign ra = roff + {{(MW-AW){1'b0}}, rd_addr};
        end else begin : one  // DEPTH = 1: the address is always 0
            wire unused_addr = &{1'b0, wr_addr, rd_addr};
            assign wa = wb;
            assign ra = rb;
        end
    endgenerate

    generate
        if (BLOCK != 0) begin : block
            (* ram_style = "block" *) reg [W-1:0] mem [0:BANKS*BANK-1];
            reg [W-1:0] rd_q;  // the block RAM's output register: two cycles of read latency
            always @(posedge clk) begin
                if (wr_en) mem[wa] <= wr_data;
                rd_q <= mem[ra];
                rd_data <= rd_q;
            end
        end else begin : any
            reg [W-1:0] mem [0:BANKS*BANK-1];
            always @(posedge clk) begin
                if (wr_en) mem[wa] <= wr_data;
                rd_data <= mem[ra];
            end
        end
    endgenerate

    always @(posedge clk) begin
        if (rst) begin
            full <= {BANKS{1'b0}};
            wb <= {BW{1'b0}};
            rb <= {BW{1'b0}};
        end else begin
            if (wr_done) begin
                full[wb] <= 1'b1;
                wb <= wb == LASTB ? {BW{1'b0}} : wb + 1'b1;
            end
            if (rd_done) begin
                full[rb] <= 1'b0;
                rb <= rb == LASTB ? {BW{1'b0}} : rb + 1'b1;
            end
        end
    end
endmodule
`default_nettype wire
