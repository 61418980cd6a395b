// Board glue for the iCE40 HX8K around the target's answer path alone: its answer inputs and the
// generation come registered from a shift register loaded through one pin (as from the lock
// table), the transmit stream and the drop counter fold into one pin. Only for place-and-route
// figures and a bitstream.
module ice40_answer_top(input clk, input sin, input load, input ready, output sout, output tx_led);
  reg [233:0] sr = 0;
  always @(posedge clk) if (load) sr <= {sr[232:0], sin};
  reg ans_valid = 0, tx_ready = 0;
  reg [7:0] ans_ty = 0;
  reg [63:0] ans_seq = 0, ans_lock_id = 0, ans_arg = 0;
  reg [31:0] generation = 0;
  always @(posedge clk) begin
    ans_valid <= sr[0] & ~load;
    ans_ty <= sr[8:1];
    ans_seq <= sr[72:9];
    ans_lock_id <= sr[136:73];
    ans_arg <= sr[200:137];
    generation <= sr[232:201];
    tx_ready <= ready;
  end
  wire [63:0] tx_data;
  wire [31:0] dropped;
  wire tx_valid, tx_last;
  answer_emitter ans(
    .clock(clk), .ans_valid(ans_valid), .ans_ty(ans_ty), .ans_seq(ans_seq),
    .ans_lock_id(ans_lock_id), .ans_arg(ans_arg), .generation(generation),
    .tx_data(tx_data), .tx_valid(tx_valid), .tx_last(tx_last), .tx_ready(tx_ready),
    .dropped(dropped));
  reg [63:0] acc = 0;
  always @(posedge clk)
    if (tx_valid) acc <= acc ^ tx_data ^ {dropped, 30'b0, tx_last, tx_valid};
  assign sout = ^acc;
  assign tx_led = tx_valid;
endmodule
