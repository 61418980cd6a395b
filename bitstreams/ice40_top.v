// Board glue for the iCE40 HX8K: the send path's ~600 input bits come from a shift register
// loaded through one pin, and its outputs fold into one pin, so synthesis keeps all of the core
// and the design fits the package's IO. Only for place-and-route figures and a real bitstream.
module ice40_top(input clk, input sin, input load, output sout, output busy_led);
  localparam IN_BITS = 598;
  reg [IN_BITS-1:0] sr = 0;
  always @(posedge clk) if (load) sr <= {sr[IN_BITS-2:0], sin};

  wire [63:0] tx_data;
  wire tx_valid, tx_last, desc_ready, data_ready, busy;
  spec_sender core(
    .clock(clk),
    .desc_valid(sr[0]),
    .desc_seq(sr[64:1]),
    .desc_lock_id(sr[128:65]),
    .desc_offset(sr[192:129]),
    .desc_length(sr[224:193]),
    .desc_mode(sr[226:225]),
    .desc_flags(sr[242:227]),
    .desc_generation(sr[274:243]),
    .desc_first_region(sr[338:275]),
    .desc_region_count(sr[402:339]),
    .ack_lock(sr[466:403]),
    .ack_seq(sr[530:467]),
    .data_in({sr[593:531], sr[0]}),
    .data_valid(sr[594]),
    .granted(sr[595]),
    .tx_ready(sr[596]),
    .desc_ready(desc_ready),
    .data_ready(data_ready),
    .tx_data(tx_data),
    .tx_valid(tx_valid),
    .tx_last(tx_last),
    .busy(busy));

  reg [67:0] acc = 0;
  always @(posedge clk) acc <= acc ^ {tx_data, tx_valid, tx_last, desc_ready, data_ready};
  assign sout = ^acc;
  assign busy_led = busy;
endmodule
