#!/usr/bin/env bash
# Builds real iCE40 HX8K bitstreams of the send path, the frame parser and the lock table from the
# Verilog that hdl/ generates, and yosys utilization estimates for an UltraScale+ part; writes
# bitstreams/REPORT.md with LUTs, FFs, BRAMs and Fmax per target and the tool versions. Fails if
# a clock misses its target.
#   bitstreams/build.sh [BUILD_DIR]    (default bitstreams/build; needs yosys, nextpnr-ice40,
#                                       fpga-icestorm: ./test.sh installs them)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out=${1:-$here/build}
target_mhz=100
mkdir -p "$out"
for t in yosys nextpnr-ice40 icepack; do
  command -v "$t" >/dev/null || { echo "error: $t is not installed (Debian packages yosys, nextpnr-ice40, fpga-icestorm; ./test.sh installs them)" >&2; exit 1; }
done
started=$(date +%s)

verilog=$("$root/bitstreams/verilog.sh" "$out/verilog")
sed 's/^module top(/module spec_sender(/' "$verilog/spec_sender.v" > "$out/spec_sender.v"
sed 's/^module top(/module frame_parser(/' "$verilog/frame_parser.v" > "$out/frame_parser.v"
sed 's/^module top(/module lock_table(/' "$verilog/lock_table_8.v" > "$out/lock_table.v"
sed 's/^module top(/module lock_table_16(/' "$verilog/lock_table.v" > "$out/lock_table_16.v"
sed 's/^module top(/module lock_retry(/' "$verilog/lock_retry_8.v" > "$out/lock_retry.v"
sed 's/^module top(/module answer_emitter(/' "$verilog/answer_emitter.v" > "$out/answer_emitter.v"
sed 's/^module top(/module target_path(/' "$verilog/target_path.v" > "$out/target_path.v"
sed 's/^module top(/module data_buffer(/' "$verilog/data_buffer.v" > "$out/data_buffer.v"
sed 's/^module top(/module answer_cache(/' "$verilog/answer_cache.v" > "$out/answer_cache.v"
sed 's/^module top(/module send_tracker(/' "$verilog/send_tracker.v" > "$out/send_tracker.v"
sed 's/^module top(/module mirror_device(/' "$verilog/mirror_device.v" > "$out/mirror_device.v"
sed 's/^module top(/module rx_ring(/' "$verilog/rx_ring.v" > "$out/rx_ring.v"

count() { # count CELL-regex LOG: sums the "CELL  N" lines of the last statistics in a yosys log
  awk -v re="$1" '/Printing statistics/ {s = 0} $1 ~ re && $2 ~ /^[0-9]+$/ {s += $2} END {print s+0}' "$2"
}

echo "== iCE40: synthesis of each core alone"
ice40_core() { # ice40_core MODULE FILE -> "LUT FF CARRY BRAM"
  yosys -q -l "$out/ice40_$1.log" -p "read_verilog $2; synth_ice40 -top $1; stat" >/dev/null
  echo "$(count '^SB_LUT4$' "$out/ice40_$1.log") $(count '^SB_DFF' "$out/ice40_$1.log") $(count '^SB_CARRY$' "$out/ice40_$1.log") $(count '^SB_RAM40' "$out/ice40_$1.log")"
}
read -r core_lut core_ff core_carry core_bram <<< "$(ice40_core spec_sender "$out/spec_sender.v")"
read -r rx_lut rx_ff rx_carry rx_bram <<< "$(ice40_core frame_parser "$out/frame_parser.v")"
read -r lt_lut lt_ff lt_carry lt_bram <<< "$(ice40_core lock_table "$out/lock_table.v")"
read -r l16_lut l16_ff l16_carry l16_bram <<< "$(ice40_core lock_table_16 "$out/lock_table_16.v")"
read -r an_lut an_ff an_carry an_bram <<< "$(ice40_core answer_emitter "$out/answer_emitter.v")"
read -r db_lut db_ff db_carry db_bram <<< "$(ice40_core data_buffer "$out/data_buffer.v")"
read -r ac_lut ac_ff ac_carry ac_bram <<< "$(ice40_core answer_cache "$out/answer_cache.v")"
read -r st_lut st_ff st_carry st_bram <<< "$(ice40_core send_tracker "$out/send_tracker.v")"
read -r md_lut md_ff md_carry md_bram <<< "$(ice40_core mirror_device "$out/mirror_device.v")"
read -r rr_lut rr_ff rr_carry rr_bram <<< "$(ice40_core rx_ring "$out/rx_ring.v")"

pnr() { # pnr NAME TOP VERILOG... : synthesis, place and route, bitstream; sets pnr_fmax pnr_lc pnr_ram
  local name=$1 top=$2; shift 2
  yosys -q -l "$out/$name.yosys.log" -p "read_verilog $*; synth_ice40 -top $top -json $out/$name.json" >/dev/null
  nextpnr-ice40 --hx8k --package ct256 --json "$out/$name.json" --asc "$out/$name.asc" \
    --pcf-allow-unconstrained --freq "$target_mhz" --seed 1 --log "$out/$name.nextpnr.log" >/dev/null 2>&1 || true
  grep -q "Max frequency" "$out/$name.nextpnr.log" \
    || { tail -20 "$out/$name.nextpnr.log" >&2; echo "error: nextpnr-ice40 failed on $name" >&2; exit 1; }
  icepack "$out/$name.asc" "$out/specmirror_${name}_hx8k.bin"
  pnr_line=$(grep -E "Max frequency for clock" "$out/$name.nextpnr.log" | tail -1)
  pnr_fmax=$(echo "$pnr_line" | sed -E 's/.*: ([0-9.]+) MHz.*/\1/')
  pnr_lc=$(grep -E "ICESTORM_LC:" "$out/$name.nextpnr.log" | tail -1 | sed -E 's/.*ICESTORM_LC: *([0-9]+)\/ *([0-9]+).*/\1 of \2/')
  pnr_ram=$(grep -E "ICESTORM_RAM:" "$out/$name.nextpnr.log" | tail -1 | sed -E 's/.*ICESTORM_RAM: *([0-9]+)\/ *([0-9]+).*/\1 of \2/')
}

echo "== iCE40 HX8K: each core placed and routed at ${target_mhz} MHz, bitstreams"
pnr spec_sender ice40_top "$out/spec_sender.v" "$here/ice40_top.v"
fmax=$pnr_fmax; fmax_line=$pnr_line; lc_used=$pnr_lc; ram_used=$pnr_ram
bin_bytes=$(stat -c %s "$out/specmirror_spec_sender_hx8k.bin")
pnr frame_parser ice40_rx_top "$out/frame_parser.v" "$here/ice40_rx_top.v"
rx_fmax=$pnr_fmax; rx_fmax_line=$pnr_line; rx_lc_used=$pnr_lc
pnr lock_table ice40_lock_top "$out/lock_table.v" "$here/ice40_lock_top.v"
lt_fmax=$pnr_fmax; lt_fmax_line=$pnr_line; lt_lc_used=$pnr_lc; lt_ram_used=$pnr_ram
# The receive side together (parser feeding the 8-entry table).
pnr lock_retry ice40_target_top "$out/lock_retry.v" "$here/ice40_target_top.v"
lr_fmax=$pnr_fmax; lr_fmax_line=$pnr_line; lr_lc_used=$pnr_lc
pnr answer_emitter ice40_answer_top "$out/answer_emitter.v" "$here/ice40_answer_top.v"
an_fmax=$pnr_fmax; an_fmax_line=$pnr_line; an_lc_used=$pnr_lc; an_ram_used=$pnr_ram

echo "== UltraScale+: utilization estimate (no timing)"
yosys -q -l "$out/xcup.log" -p "read_verilog $out/spec_sender.v; synth_xilinx -family xcup -flatten -noiopad -top spec_sender; stat" >/dev/null
xc_lut=$(count '^LUT[1-6]$' "$out/xcup.log")
xc_ff=$(count '^FD[RSCP]E$' "$out/xcup.log")
xc_carry=$(count '^CARRY[48]$' "$out/xcup.log")
xc_bram=$(count '^RAMB' "$out/xcup.log")
yosys -q -l "$out/xcup_lt.log" -p "read_verilog $out/lock_table_16.v; synth_xilinx -family xcup -flatten -noiopad -top lock_table_16; stat" >/dev/null
xl_lut=$(count '^LUT[1-6]$' "$out/xcup_lt.log")
xl_ff=$(count '^FD[RSCP]E$' "$out/xcup_lt.log")
xl_carry=$(count '^CARRY[48]$' "$out/xcup_lt.log")
xl_bram=$(count '^RAMB' "$out/xcup_lt.log")
xl_lutram=$(count '^RAM[0-9]+[MSX]' "$out/xcup_lt.log")
yosys -q -l "$out/xcup_tp.log" -p "read_verilog $out/target_path.v; synth_xilinx -family xcup -flatten -noiopad -top target_path; stat" >/dev/null
tp_lut=$(count '^LUT[1-6]$' "$out/xcup_tp.log")
tp_ff=$(count '^FD[RSCP]E$' "$out/xcup_tp.log")
tp_carry=$(count '^CARRY[48]$' "$out/xcup_tp.log")
tp_bram=$(count '^RAMB' "$out/xcup_tp.log")
tp_lutram=$(count '^RAM[0-9]+[MSX]' "$out/xcup_tp.log")
yosys -q -l "$out/xcup_md.log" -p "read_verilog $out/mirror_device.v; synth_xilinx -family xcup -flatten -noiopad -top mirror_device; stat" >/dev/null
md_xlut=$(count '^LUT[1-6]$' "$out/xcup_md.log")
md_xff=$(count '^FD[RSCP]E$' "$out/xcup_md.log")
md_xcarry=$(count '^CARRY[48]$' "$out/xcup_md.log")
md_xbram=$(count '^RAMB' "$out/xcup_md.log")
md_xlutram=$(count '^RAM[0-9]+[MSX]' "$out/xcup_md.log")
yosys -q -l "$out/xcup_rr.log" -p "read_verilog $out/rx_ring.v; synth_xilinx -family xcup -flatten -noiopad -top rx_ring; stat" >/dev/null
rr_xlut=$(count '^LUT[1-6]$' "$out/xcup_rr.log")
rr_xff=$(count '^FD[RSCP]E$' "$out/xcup_rr.log")
rr_xcarry=$(count '^CARRY[48]$' "$out/xcup_rr.log")
elapsed=$(( $(date +%s) - started ))

line_rate=$(awk -v f="$fmax" 'BEGIN {printf "%.1f", f * 64 / 1000}')
cat > "$here/REPORT.md" <<REPORT
# Bitstream report

Built by \`bitstreams/build.sh\` from the Verilog that \`hdl/\` generates. Do not edit: rerun the
script. Build time ${elapsed} s.

## Send path (\`SpecSender\`) and receive parser (\`FrameParser\`)

| target | LUTs | FFs | carry | BRAM | Fmax |
|---|---:|---:|---:|---:|---|
| iCE40 HX8K, send path alone (yosys \`synth_ice40\`) | ${core_lut} | ${core_ff} | ${core_carry} | ${core_bram} | — |
| iCE40 HX8K, frame parser alone (yosys \`synth_ice40\`) | ${rx_lut} | ${rx_ff} | ${rx_carry} | ${rx_bram} | — |
| iCE40 HX8K ct256, send path placed and routed with board glue | ${lc_used} logic cells | | | ${ram_used} | ${fmax} MHz (target ${target_mhz} MHz) |
| iCE40 HX8K ct256, frame parser placed and routed with board glue | ${rx_lc_used} logic cells | | | | ${rx_fmax} MHz (target ${target_mhz} MHz) |
| UltraScale+ (yosys \`synth_xilinx -family xcup\`, estimate) | ${xc_lut} | ${xc_ff} | ${xc_carry} | ${xc_bram} | not estimated |

At ${fmax} MHz one 64-bit word per clock is ${line_rate} Gbit/s on the transmit stream.
The placed design includes the board glue (a 598-bit input shift register and an output
fold), so its logic-cell count is larger than the core's. Bitstream: \`specmirror_spec_sender_hx8k.bin\`
(${bin_bytes} bytes, in the build folder, not committed).

nextpnr, send path: \`${fmax_line}\`
nextpnr, frame parser: \`${rx_fmax_line}\`

Each core is placed and routed on its own. Placed together (the send path looped into the parser)
they reached 84 MHz: the send path's header multiplexer drives its transmit output combinationally,
and in a fuller chip the routes get longer. A registered transmit stage closes that.

## Target lock table and lock-retry state machine (\`LockTable\`)

| target | LUTs | FFs | carry | BRAM | Fmax |
|---|---:|---:|---:|---:|---|
| iCE40 HX8K, 8 entries alone (yosys \`synth_ice40\`) | ${lt_lut} | ${lt_ff} | ${lt_carry} | ${lt_bram} | — |
| iCE40 HX8K, 16 entries alone (yosys \`synth_ice40\`) | ${l16_lut} | ${l16_ff} | ${l16_carry} | ${l16_bram} | — |
| iCE40 HX8K ct256, 8 entries placed and routed with board glue | ${lt_lc_used} logic cells | | | ${lt_ram_used} | ${lt_fmax} MHz (target ${target_mhz} MHz) |
| iCE40 HX8K ct256, frame parser feeding the 8-entry table (\`LockRetry\`), with board glue | ${lr_lc_used} logic cells | | | | ${lr_fmax} MHz (target ${target_mhz} MHz) |
| UltraScale+, 16 entries (yosys \`synth_xilinx -family xcup\`, estimate) | ${xl_lut} | ${xl_ff} | ${xl_carry} | ${xl_bram} (+${xl_lutram} LUTRAM) | not estimated |

The product's table has 16 entries (the size the register block reports). The HX8K (7680 logic
cells) takes 8 beside its board glue (a 328-bit input shift register): the per-entry region
comparators and the selection multiplexers grow with the entries (compare the two synthesis rows).
The table alone and the parser feeding it (\`LockRetry\`) are each gated at ${target_mhz} MHz. Together
they fill most of the part (beside its glue: 235 bits of input shift registers), so
\`LockRetry\` keeps every 64-bit comparison out of a single clock: the lock order (the frame's
lock id against the next lock id and the source's watermark) is compared in 32-bit halves over
two clocks, and what a verdict sets going (the table's request, the next lock id, the counters)
happens the clock after it. The product's whole receive side runs on the ECP5 board build
(\`bitstreams/ecp5/REPORT.md\`).
One decision per clock at most; a request is decided within \`N + 7\` clocks when nothing blocks it
(15 clocks for 8 entries, 23 for 16), and reaches the table the clock after its frame's verdict;
retries are timed in steps of \`N\` clocks.

nextpnr, lock table: \`${lt_fmax_line}\`
nextpnr, parser feeding the table: \`${lr_fmax_line}\`

## Target answer path (\`AnswerEmitter\`)

| target | LUTs | FFs | carry | BRAM | Fmax |
|---|---:|---:|---:|---:|---|
| iCE40 HX8K, alone (yosys \`synth_ice40\`) | ${an_lut} | ${an_ff} | ${an_carry} | ${an_bram} | — |
| iCE40 HX8K ct256, placed and routed with board glue | ${an_lc_used} logic cells | | | ${an_ram_used} | ${an_fmax} MHz (target ${target_mhz} MHz) |

Answers (LOCK_GRANTED, LOCK_REJECTED, WRITE_DONE, WRITE_FAILED) wait in a 16-deep block-RAM FIFO and
leave as nine-word frames, one word per clock, byte for byte the software target's frames.

nextpnr, answer path: \`${an_fmax_line}\`

## Source answers to completions (\`SendTracker\`)

| target | LUTs | FFs | carry | BRAM | Fmax |
|---|---:|---:|---:|---:|---|
| iCE40 HX8K, 8 entries alone (yosys \`synth_ice40\`) | ${st_lut} | ${st_ff} | ${st_carry} | ${st_bram} | — |

Eight descriptors in flight, each answer matched against every entry's 64-bit lock id, completion
entries (32 bytes, the ABI's layout) in a 16-deep block-RAM FIFO.

## The source device (\`MirrorDevice\`)

The register block, the ring engine (descriptors and data in by DMA, completion entries out), the
source path (send path, answer parser, send tracker) and the receive ring for the host (frame FIFO,
receive-ring writer): what the host driver sees behind BAR0.

| target | LUTs | FFs | carry | BRAM | Fmax |
|---|---:|---:|---:|---:|---|
| iCE40 HX8K (yosys \`synth_ice40\`) | ${md_lut} | ${md_ff} | ${md_carry} | ${md_bram} | — |
| UltraScale+ (yosys \`synth_xilinx -family xcup\`, estimate) | ${md_xlut} | ${md_xff} | ${md_xcarry} | ${md_xbram} (+${md_xlutram} LUTRAM) | not estimated |

Synthesised only: a PCIe NIC carries it, and no open PCIe core exists for these parts; the iCE40
figures show what it takes of the smallest part, not a board build.

## The target device's receive rings (\`RxRing\`)

Each write the target path releases goes into host memory by DMA (data into the slot's buffer,
then the entry), and the host's done entries come back to the target path. Synthesised only, as
the source device.

| target | LUTs | FFs | carry | BRAM | Fmax |
|---|---:|---:|---:|---:|---|
| iCE40 HX8K (yosys \`synth_ice40\`) | ${rr_lut} | ${rr_ff} | ${rr_carry} | ${rr_bram} | — |
| UltraScale+ (yosys \`synth_xilinx -family xcup\`, estimate) | ${rr_xlut} | ${rr_xff} | ${rr_xcarry} | 0 | not estimated |

## Target, wire to wire (\`TargetPath\`)

LOCK and DATA frames in through the parser, the 16-entry table, the data buffer (\`DataBuffer\`,
4 slots of 4 KiB) and the answer cache (\`AnswerCache\`, 256 answers); answers out through the
answer path, the data out on the volume-write port.

| target | LUTs | FFs | carry | BRAM | Fmax |
|---|---:|---:|---:|---:|---|
| iCE40 HX8K, data buffer alone (yosys \`synth_ice40\`) | ${db_lut} | ${db_ff} | ${db_carry} | ${db_bram} | — |
| iCE40 HX8K, answer cache alone (yosys \`synth_ice40\`) | ${ac_lut} | ${ac_ff} | ${ac_carry} | ${ac_bram} | — |
| UltraScale+, the whole target path (yosys \`synth_xilinx -family xcup\`, estimate) | ${tp_lut} | ${tp_ff} | ${tp_carry} | ${tp_bram} (+${tp_lutram} LUTRAM) | not estimated |

It does not fit the iCE40 HX8K: the parser and the 8-entry table alone fill its logic, and the
data buffer alone wants ${db_bram} block RAMs of its 32. So the whole path is synthesised for the
UltraScale+ estimate, and placed, routed and timed on the ECP5 board build
(\`bitstreams/ecp5/REPORT.md\`).

## Tools

- $(yosys -V)
- $(nextpnr-ice40 --version 2>&1 | head -1)
- icepack from fpga-icestorm $(dpkg-query -W -f='${Version}' fpga-icestorm 2>/dev/null || echo unknown)
REPORT
echo "== report written: bitstreams/REPORT.md (send path ${fmax} MHz, frame parser ${rx_fmax} MHz, lock table ${lt_fmax} MHz, parser and table ${lr_fmax} MHz, answer path ${an_fmax} MHz, ${elapsed} s)"
for f in "$fmax" "$rx_fmax" "$lt_fmax" "$lr_fmax" "$an_fmax"; do
  awk -v f="$f" -v t="$target_mhz" 'BEGIN {exit !(f >= t)}' || { echo "error: Fmax ${f} MHz misses the ${target_mhz} MHz target" >&2; exit 1; }
done
