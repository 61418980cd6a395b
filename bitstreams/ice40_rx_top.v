// Board glue for the iCE40 HX8K around the receive-side frame parser alone: its receive stream
// comes registered from a shift register loaded through one pin (as from a MAC), its outputs fold
// into one pin. Only for place-and-route figures and a bitstream.
module ice40_rx_top(input clk, input sin, input load, output sout, output ok_led);
  reg [65:0] sr = 0;
  always @(posedge clk) if (load) sr <= {sr[64:0], sin};
  reg [63:0] rx_data = 0;
  reg rx_valid = 0, rx_last = 0;
  always @(posedge clk) begin
    rx_data <= sr[63:0];
    rx_valid <= sr[64];
    rx_last <= sr[65];
  end
  wire [63:0] p_seq, p_lock_id, p_offset, p_arg, p_ack_lock, p_ack_seq, p_pay;
  wire [31:0] p_len, p_gen, p_bad;
  wire [15:0] p_flags;
  wire [7:0] p_ty;
  wire p_hdr, p_pay_valid, p_ok, p_badf;
  frame_parser rx(
    .clock(clk), .rx_data(rx_data), .rx_valid(rx_valid), .rx_last(rx_last),
    .ty(p_ty), .flags(p_flags), .payload_len(p_len), .generation(p_gen), .seq(p_seq),
    .lock_id(p_lock_id), .offset(p_offset), .arg(p_arg), .ack_lock(p_ack_lock),
    .ack_seq(p_ack_seq), .hdr_valid(p_hdr), .pay_data(p_pay), .pay_valid(p_pay_valid),
    .frame_ok(p_ok), .frame_bad(p_badf), .bad_count(p_bad));
  reg [67:0] acc = 0;
  always @(posedge clk)
    acc <= acc ^ {p_seq ^ p_lock_id ^ p_offset ^ p_arg ^ p_ack_lock ^ p_ack_seq ^ p_pay,
                  p_hdr, p_pay_valid, p_ok, p_badf}
          ^ {p_len, p_gen ^ p_bad, 4'b0} ^ {p_flags, p_ty, 44'b0};
  assign sout = ^acc;
  assign ok_led = p_ok;
endmodule
