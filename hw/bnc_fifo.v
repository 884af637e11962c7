// bnc_fifo: a valid/ready FIFO of DEPTH words (DEPTH a power of two), full rate both ways.
`default_nettype none
module bnc_fifo #(
    parameter integer W = 8,
    parameter integer DEPTH = 4,
    parameter integer LW = $clog2(DEPTH)
) (
    input  wire         clk,
    input  wire         rst,
    input  wire         in_valid,
    output wire         in_ready,
    input  wire [W-1:0] in_data,
    output wire         out_valid,
    input  wire         out_ready,
    output wire [W-1:0] out_data,
    output reg  [LW:0]  count
);
    reg [W-1:0] mem [0:DEPTH-1];
    reg [LW-1:0] head, tail;
    wire push = in_valid && in_ready;
    wire pop = out_valid && out_ready;
    assign in_ready = count != DEPTH[LW:0];
    assign out_valid = count != 0;
    assign out_data = mem[head];
    always @(posedge clk) begin
        if (push) mem[tail] <= in_data;
        if (rst) begin
            head <= 0;
            tail <= 0;
            count <= 0;
        end else begin
            if (push) tail <= tail + 1'b1;
            if (pop) head <= head + 1'b1;
            count <= count + {{LW{1'b0}}, push} - {{LW{1'b0}}, pop};
        end
    end
endmodule
`default_nettype wire
