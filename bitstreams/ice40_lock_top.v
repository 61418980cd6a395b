// Board glue for the iCE40 HX8K around the target's lock table alone: its request, release and
// configuration inputs come registered from a shift register loaded through one pin (as from the
// frame parser and the register block), its outputs fold into one pin. Only for place-and-route
// figures and a bitstream.
module ice40_lock_top(input clk, input sin, input load, output sout, output ready_led);
  reg [327:0] sr = 0;
  always @(posedge clk) if (load) sr <= {sr[326:0], sin};
  reg [327:0] in = 0;
  always @(posedge clk) in <= sr;
  wire [63:0] d_lock_id, d_seq;
  wire [7:0] d_reason;
  wire [2:0] d_slot;
  wire [7:0] d_held;
  wire d_valid, d_granted, d_retried, d_ready;
  lock_table lt(
    .clock(clk),
    .req_valid(in[0]), .req_lock_id(in[64:1]), .req_seq(in[128:65]),
    .req_first(in[160:129]), .req_count(in[192:161]), .region_count(in[224:193]),
    .local_hold(in[225]), .local_first(in[257:226]), .local_end(in[289:258]),
    .retry_backoff(in[305:290]), .retry_limit(in[321:306]),
    .rel_valid(in[322]), .rel_slot(in[325:323]), .rel_fail(in[326]), .clear_barriers(in[327]),
    .req_ready(d_ready), .dec_valid(d_valid), .dec_granted(d_granted), .dec_reason(d_reason),
    .dec_lock_id(d_lock_id), .dec_seq(d_seq), .dec_slot(d_slot), .retried(d_retried),
    .held(d_held));
  reg [63:0] acc = 0;
  always @(posedge clk)
    acc <= acc ^ d_lock_id ^ d_seq ^ {d_reason, d_slot, d_held, d_valid, d_granted, d_retried, 42'b0};
  assign sout = ^acc;
  assign ready_led = d_ready;
endmodule
