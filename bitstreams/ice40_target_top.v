// Board glue for the iCE40 HX8K around the target's receive side for locks (frame parser feeding
// the 8-entry lock table): the receive stream comes from the registers of a shift register loaded
// through one pin (as from a MAC), the host's inputs from a second one, the outputs fold into one
// pin. Each input is one register deep: the part is nearly full, and a second copy of 235 bits
// would only take cells from the design. Only for place-and-route figures and a bitstream.
module ice40_target_top(input clk, input sin, input load, input cin, input cload,
                        output sout, output drop_led);
  reg [65:0] sr = 0;
  always @(posedge clk) if (load) sr <= {sr[64:0], sin};
  wire [63:0] rx_data = sr[63:0];
  wire rx_valid = sr[64], rx_last = sr[65];
  reg [168:0] cr = 0;
  always @(posedge clk) if (cload) cr <= {cr[167:0], cin};
  wire [168:0] c = cr;
  wire [63:0] d_lock_id, d_seq;
  wire [31:0] bad, drops;
  wire [7:0] d_reason, d_held;
  wire [2:0] d_slot;
  wire d_valid, d_granted, d_retried, d_overflow;
  lock_retry rx(
    .clock(clk), .rx_data(rx_data), .rx_valid(rx_valid), .rx_last(rx_last),
    .region_count(c[31:0]), .retry_backoff(c[47:32]), .retry_limit(c[63:48]),
    .local_hold(c[64]), .local_first(c[96:65]), .local_end(c[128:97]),
    .rel_valid(c[129]), .rel_slot(c[132:130]), .clear_barriers(c[133]), .rel_fail(c[134]),
    .generation(c[166:135]),
    .dec_valid(d_valid), .dec_granted(d_granted), .dec_reason(d_reason),
    .dec_lock_id(d_lock_id), .dec_seq(d_seq), .dec_slot(d_slot), .retried(d_retried),
    .held(d_held), .overflow(d_overflow), .frames_bad(bad), .lock_drops(drops));
  reg [63:0] acc = 0;
  always @(posedge clk)
    acc <= acc ^ d_lock_id ^ d_seq ^ {bad, drops} ^ {d_reason, d_held, d_slot, d_valid, d_granted,
                                                      d_retried, d_overflow, 41'b0};
  assign sout = ^acc;
  assign drop_led = drops[0];
endmodule
