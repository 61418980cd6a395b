#!/usr/bin/env bash
# Builds a real iCE40 HX8K bitstream of the send path from the Verilog that hdl/ generates, and a
# yosys utilization estimate for an UltraScale+ part; writes bitstreams/REPORT.md with LUTs, FFs,
# BRAMs and Fmax per target and the tool versions. Fails if the clock misses its target.
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

echo "== generating Verilog from hdl/"
(cd "$root" && cargo run -q -p specmirror-hdl --bin specmirror-verilog -- "$out/verilog" >/dev/null)
sed 's/^module top(/module spec_sender(/' "$out/verilog/spec_sender.v" > "$out/spec_sender.v"

count() { # count CELL-regex LOG: sums the "CELL  N" lines of the last statistics in a yosys log
  awk -v re="$1" '/Printing statistics/ {s = 0} $1 ~ re && $2 ~ /^[0-9]+$/ {s += $2} END {print s+0}' "$2"
}

echo "== iCE40: synthesis of the core alone"
yosys -q -l "$out/ice40_core.log" -p "read_verilog $out/spec_sender.v; synth_ice40 -top spec_sender; stat" >/dev/null
core_lut=$(count '^SB_LUT4$' "$out/ice40_core.log")
core_ff=$(count '^SB_DFF' "$out/ice40_core.log")
core_carry=$(count '^SB_CARRY$' "$out/ice40_core.log")
core_bram=$(count '^SB_RAM40' "$out/ice40_core.log")

echo "== iCE40 HX8K: synthesis, place and route at ${target_mhz} MHz, bitstream"
yosys -q -l "$out/ice40_top.log" -p "read_verilog $out/spec_sender.v $here/ice40_top.v; synth_ice40 -top ice40_top -json $out/ice40_top.json" >/dev/null
nextpnr-ice40 --hx8k --package ct256 --json "$out/ice40_top.json" --asc "$out/ice40_top.asc" \
  --pcf-allow-unconstrained --freq "$target_mhz" --seed 1 --log "$out/nextpnr.log" >/dev/null 2>&1 \
  || { tail -20 "$out/nextpnr.log" >&2; echo "error: nextpnr-ice40 failed" >&2; exit 1; }
icepack "$out/ice40_top.asc" "$out/specmirror_spec_sender_hx8k.bin"
fmax_line=$(grep -E "Max frequency for clock" "$out/nextpnr.log" | tail -1)
fmax=$(echo "$fmax_line" | sed -E 's/.*: ([0-9.]+) MHz.*/\1/')
lc_used=$(grep -E "ICESTORM_LC:" "$out/nextpnr.log" | tail -1 | sed -E 's/.*ICESTORM_LC: *([0-9]+)\/ *([0-9]+).*/\1 of \2/')
ram_used=$(grep -E "ICESTORM_RAM:" "$out/nextpnr.log" | tail -1 | sed -E 's/.*ICESTORM_RAM: *([0-9]+)\/ *([0-9]+).*/\1 of \2/')
bin_bytes=$(stat -c %s "$out/specmirror_spec_sender_hx8k.bin")

echo "== UltraScale+: utilization estimate (no timing)"
yosys -q -l "$out/xcup.log" -p "read_verilog $out/spec_sender.v; synth_xilinx -family xcup -flatten -noiopad -top spec_sender; stat" >/dev/null
xc_lut=$(count '^LUT[1-6]$' "$out/xcup.log")
xc_ff=$(count '^FD[RSCP]E$' "$out/xcup.log")
xc_carry=$(count '^CARRY[48]$' "$out/xcup.log")
xc_bram=$(count '^RAMB' "$out/xcup.log")
elapsed=$(( $(date +%s) - started ))

line_rate=$(awk -v f="$fmax" 'BEGIN {printf "%.1f", f * 64 / 1000}')
cat > "$here/REPORT.md" <<REPORT
# Bitstream report

Built by \`bitstreams/build.sh\` from the Verilog that \`hdl/\` generates. Do not edit: rerun the
script. Build time ${elapsed} s.

## Send path (\`SpecSender\`)

| target | LUTs | FFs | carry | BRAM | Fmax |
|---|---:|---:|---:|---:|---|
| iCE40 HX8K, core alone (yosys \`synth_ice40\`) | ${core_lut} | ${core_ff} | ${core_carry} | ${core_bram} | — |
| iCE40 HX8K ct256, placed and routed with board glue | ${lc_used} logic cells | | | ${ram_used} | ${fmax} MHz (target ${target_mhz} MHz) |
| UltraScale+ (yosys \`synth_xilinx -family xcup\`, estimate) | ${xc_lut} | ${xc_ff} | ${xc_carry} | ${xc_bram} | not estimated |

At ${fmax} MHz one 64-bit word per clock is ${line_rate} Gbit/s on the transmit stream.
The placed design includes the board glue (a 598-bit input shift register and an output
fold), so its logic-cell count is larger than the core's. Bitstream: \`specmirror_spec_sender_hx8k.bin\`
(${bin_bytes} bytes, in the build folder, not committed).

nextpnr: \`${fmax_line}\`

## Tools

- $(yosys -V)
- $(nextpnr-ice40 --version 2>&1 | head -1)
- icepack from fpga-icestorm $(dpkg-query -W -f='${Version}' fpga-icestorm 2>/dev/null || echo unknown)
REPORT
echo "== report written: bitstreams/REPORT.md (Fmax ${fmax} MHz, ${elapsed} s)"
awk -v f="$fmax" -v t="$target_mhz" 'BEGIN {exit !(f >= t)}' || { echo "error: Fmax ${fmax} MHz misses the ${target_mhz} MHz target" >&2; exit 1; }
