// bnc_uart: a board's serial link to the accelerator's AXI-Stream ports (8 data bits, no
// parity, one stop bit, least significant bit first; CLKS clock cycles per bit).
// Input: BYTES_IN bytes per pixel beat, least significant first, form s_tdata (IN_W bits).
// Output: each 64-bit m_tdata word goes out as 8 bytes, least significant first.
`default_nettype none
module bnc_uart #(
    parameter integer CLKS = 100,
    parameter integer IN_W = 8,
    parameter integer BYTES_IN = (IN_W + 7) / 8
) (
    input  wire            clk,
    input  wire            rst,
    input  wire            rx,
    output reg             tx,
    output reg             s_tvalid,
    input  wire            s_tready,
    output wire [IN_W-1:0] s_tdata,
    input  wire            m_tvalid,
    output wire            m_tready,
    input  wire [63:0]     m_tdata
);
    localparam integer CW = $clog2(CLKS + 1) + 1;
    localparam [CW-1:0] FULL = CLKS[CW-1:0] - 1'b1;
    localparam [CW-1:0] HALF = FULL >> 1;
    localparam integer BW = $clog2(BYTES_IN + 1);
    localparam [BW-1:0] LASTB = BYTES_IN[BW-1:0] - 1'b1;

    // Receiver: two flops against metastability, then sample mid-bit.
    reg rx1, rx2;
    reg [CW-1:0] rcnt;
    reg [3:0] rbit;  // 0: idle, 1: start bit, 2..9: data, 10: stop
    reg [7:0] rbyte;
    reg [8*BYTES_IN-1:0] word;
    reg [BW-1:0] nbytes;
    wire [8*BYTES_IN-1:0] next_word;  // the byte just received on top, the word shifted down
    generate
        if (BYTES_IN > 1) begin : shift
            assign next_word = {rbyte, word[8*BYTES_IN-1:8]};
        end else begin : one
            assign next_word = rbyte;
        end
    endgenerate
    always @(posedge clk) begin
        rx1 <= rx;
        rx2 <= rx1;
        if (rst) begin
            rbit <= 0;
            nbytes <= 0;
            s_tvalid <= 1'b0;
        end else begin
            if (s_tvalid && s_tready) s_tvalid <= 1'b0;
            if (rbit == 0) begin
                if (!rx2) begin
                    rbit <= 1;
                    rcnt <= HALF;
                end
            end else if (rcnt != 0) begin
                rcnt <= rcnt - 1'b1;
            end else begin
                rcnt <= FULL;
                if (rbit == 1) begin
                    rbit <= rx2 ? 4'd0 : 4'd2;  // a glitch, not a start bit
                end else if (rbit <= 9) begin
                    rbyte <= {rx2, rbyte[7:1]};
                    rbit <= rbit + 1'b1;
                end else begin
                    rbit <= 0;
                    word <= next_word;
                    if (nbytes == LASTB) begin
                        nbytes <= 0;
                        s_tvalid <= 1'b1;
                    end else begin
                        nbytes <= nbytes + 1'b1;
                    end
                end
            end
        end
    end
    generate
        if (8 * BYTES_IN > IN_W) begin : pad
            wire unused_pad = &{1'b0, word[8*BYTES_IN-1:IN_W]};
        end
    endgenerate
    assign s_tdata = word[IN_W-1:0];

    // Transmitter: 8 bytes per word, each start bit, 8 data bits, stop bit.
    reg [63:0] out;
    reg [3:0] obytes;  // bytes left of the word
    reg [3:0] tbit;  // 0: idle, 1: start, 2..9: data, 10: stop
    reg [CW-1:0] tcnt;
    reg [7:0] tbyte;
    assign m_tready = obytes == 0 && tbit == 0 && !rst;
    always @(posedge clk) begin
        if (rst) begin
            tx <= 1'b1;
            obytes <= 0;
            tbit <= 0;
        end else if (tbit == 0) begin
            if (m_tvalid && m_tready) begin
                out <= m_tdata;
                obytes <= 4'd8;
            end else if (obytes != 0) begin
                tbyte <= out[7:0];
                out <= {8'd0, out[63:8]};
                obytes <= obytes - 1'b1;
                tbit <= 1;
                tcnt <= FULL;
                tx <= 1'b0;
            end
        end else if (tcnt != 0) begin
            tcnt <= tcnt - 1'b1;
        end else begin
            tcnt <= FULL;
            if (tbit <= 8) begin
                tx <= tbyte[0];
                tbyte <= {1'b0, tbyte[7:1]};
                tbit <= tbit + 1'b1;
            end else if (tbit == 9) begin
                tx <= 1'b1;
                tbit <= 10;
            end else begin
                tbit <= 0;
            end
        end
    end
endmodule
`default_nettype wire
