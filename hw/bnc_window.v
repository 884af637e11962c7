// bnc_window: the sliding-window generator. After a start pulse it walks every output pixel
// (oy, ox) in raster order, G passes per pixel, every kernel tap (ky, kx) per pass and F
// channel chunks per tap, issuing one frame-buffer read per cycle: the input pixel's
// address, whether the tap lies inside the image (a padded tap reads nothing and contributes
// nothing), the chunk, the first / last step of the pass, the pass number and
// widx = (pass * KH * KW + tap) * F + chunk (the weight row).
//
// With N > 0 it walks a step list instead (sparsity in time): per output pixel the N
// entries of LIST in order, entry i = {last, first, chunk, kx, ky} in bits from the lowest
// (YW, KXW, FW, 1, 1 wide), widx = i; a pass ends at an entry marked last. The steps a list
// leaves out are the ones whose weights are all zero.
`default_nettype none
module bnc_window #(
    parameter integer IH = 4, parameter integer IW = 4,
    parameter integer KH = 3, parameter integer KW = 3,
    parameter integer SH = 1, parameter integer SW = 1,
    parameter integer PH = 0, parameter integer PW = 0,
    parameter integer G = 1,
    parameter integer F = 1,
    parameter integer OH = (IH + 2 * PH - KH) / SH + 1,
    parameter integer OW = (IW + 2 * PW - KW) / SW + 1,
    parameter integer AW = (IH * IW <= 1) ? 1 : $clog2(IH * IW),
    parameter integer GW = (G <= 1) ? 1 : $clog2(G),
    parameter integer FW = (F <= 1) ? 1 : $clog2(F),
    parameter integer N = 0,
    parameter integer YW = (KH <= 1) ? 1 : $clog2(KH),
    parameter integer KXW = (KW <= 1) ? 1 : $clog2(KW),
    parameter integer EW = YW + KXW + FW + 2,
    parameter [(N > 0 ? N : 1) * EW - 1:0] LIST = 0,
    parameter integer ROWS = N > 0 ? N : G * KH * KW * F,
    parameter integer XW = (ROWS <= 1) ? 1 : $clog2(ROWS)
) (
    input  wire          clk,
    input  wire          rst,
    input  wire          start,
    output reg           busy,
    output wire          issue,
    output wire [AW-1:0] addr,
    output wire          tap_in,
    output wire          first,
    output wire          last,
    output wire [XW-1:0] widx,
    output wire [GW-1:0] grp,
    output wire [FW-1:0] chk,
    output wire          frame_last
);
    // Coordinates are CW-bit signed: enough for every index, stride step and padding.
    localparam integer DIM = IH + IW + KH + KW + PH + PW + SH + SW + G;
    localparam integer CW = $clog2(DIM + 1) + 2;
    localparam integer LW = AW + CW + 1;  // the linear address before truncation
    localparam signed [CW-1:0] C_IH = IH[CW-1:0], C_IW = IW[CW-1:0];
    localparam signed [CW-1:0] C_PH = PH[CW-1:0], C_PW = PW[CW-1:0];
    localparam signed [CW-1:0] C_SH = SH[CW-1:0], C_SW = SW[CW-1:0];
    localparam [CW-1:0] L_KH = KH[CW-1:0] - 1'b1, L_KW = KW[CW-1:0] - 1'b1;
    localparam [CW-1:0] L_OH = OH[CW-1:0] - 1'b1, L_OW = OW[CW-1:0] - 1'b1;
    localparam integer LG = G - 1;
    localparam [GW-1:0] L_G = LG[GW-1:0];
    localparam integer LF = F - 1;
    localparam [FW-1:0] L_F = LF[FW-1:0];
    // The linear address iy * IW + ix is kept incrementally (no multiplier): the top-left of
    // the window (pbase), of its row of windows (rbase), and the tap's offset in it (toff).
    localparam integer START = -(PH * IW) - PW;
    localparam integer TROW = IW - KW + 1;
    localparam integer RSTEP = SH * IW;
    localparam signed [LW-1:0] X_START = START[LW-1:0];
    localparam signed [LW-1:0] X_TROW = TROW[LW-1:0];
    localparam signed [LW-1:0] X_RSTEP = RSTEP[LW-1:0];
    localparam signed [LW-1:0] X_SW = SW[LW-1:0];

    reg signed [CW-1:0] by, bx;  // top-left input coordinate of the window
    reg [CW-1:0] oy, ox;
    wire [CW-1:0] ky, kx;
    reg [GW-1:0] g;
    wire [FW-1:0] f;
    reg [XW-1:0] w;
    reg signed [LW-1:0] pbase, rbase;
    wire signed [LW-1:0] toff;

    wire signed [CW-1:0] iy = by + $signed(ky);
    wire signed [CW-1:0] ix = bx + $signed(kx);
    assign tap_in = !iy[CW-1] && iy < C_IH && !ix[CW-1] && ix < C_IW;
    // Only the low AW bits of the linear address are used: inside the image it is < IH*IW.
    /* verilator lint_off UNUSEDSIGNAL */
    wire signed [LW-1:0] lin = pbase + toff;
    /* verilator lint_on UNUSEDSIGNAL */
    assign addr = tap_in ? lin[AW-1:0] : {AW{1'b0}};
    assign issue = busy;
    wire g_end = g == L_G;
    wire ox_end = ox == L_OW, oy_end = oy == L_OH;
    assign frame_last = last && g_end && ox_end && oy_end;
    assign widx = w;
    assign grp = g;
    assign chk = f;

    always @(posedge clk) begin
        if (rst) begin
            busy <= 1'b0;
        end else if (!busy) begin
            if (start) busy <= 1'b1;
        end else if (frame_last) begin
            busy <= 1'b0;
        end
    end

    always @(posedge clk) begin
        if (rst || !busy) begin
            oy <= 0; ox <= 0; g <= 0; w <= 0;
            by <= -C_PH; bx <= -C_PW;
            pbase <= X_START; rbase <= X_START;
        end else begin
            if (last && g_end) begin
                if (!ox_end) pbase <= pbase + X_SW;
                else if (oy_end) begin
                    pbase <= X_START;
                    rbase <= X_START;
                end else begin
                    pbase <= rbase + X_RSTEP;
                    rbase <= rbase + X_RSTEP;
                end
                g <= 0;
                w <= 0;
                ox <= ox_end ? 0 : ox + 1'b1;
                bx <= ox_end ? -C_PW : bx + C_SW;
                if (ox_end) begin
                    oy <= oy_end ? 0 : oy + 1'b1;
                    by <= oy_end ? -C_PH : by + C_SH;
                end
            end else begin
                if (last) g <= g + 1'b1;
                w <= w + 1'b1;
            end
        end
    end

    // The tap and chunk of the step: counted (every step), or read from the list.
    generate
        if (N == 0) begin : walk
            reg [CW-1:0] ky_r, kx_r;
            reg [FW-1:0] f_r;
            reg signed [LW-1:0] toff_r;
            wire f_end = f_r == L_F, kx_end = kx_r == L_KW, ky_end = ky_r == L_KH;
            assign ky = ky_r;
            assign kx = kx_r;
            assign f = f_r;
            assign toff = toff_r;
            assign first = ky_r == 0 && kx_r == 0 && f_r == 0;
            assign last = ky_end && kx_end && f_end;
            always @(posedge clk) begin
                if (rst || !busy) begin
                    ky_r <= 0; kx_r <= 0; f_r <= 0; toff_r <= 0;
                end else begin
                    if (f_end) toff_r <= last ? 0 : kx_end ? toff_r + X_TROW : toff_r + 1'b1;
                    f_r <= f_end ? 0 : f_r + 1'b1;
                    if (f_end) kx_r <= kx_end ? 0 : kx_r + 1'b1;
                    if (f_end && kx_end) ky_r <= ky_end ? 0 : ky_r + 1'b1;
                end
            end
        end else begin : list
            localparam signed [LW-1:0] X_IW = IW[LW-1:0];
            wire [EW-1:0] e = LIST[w * EW +: EW];
            assign ky = {{(CW - YW){1'b0}}, e[YW-1:0]};
            assign kx = {{(CW - KXW){1'b0}}, e[YW +: KXW]};
            assign f = e[YW + KXW +: FW];
            assign first = e[EW - 2];
            assign last = e[EW - 1];
            assign toff = $signed({{(LW - CW){1'b0}}, ky}) * X_IW + $signed({{(LW - CW){1'b0}}, kx});
        end
    endgenerate
endmodule
`default_nettype wire
