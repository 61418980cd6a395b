#!/usr/bin/env bash
# Prints the folder that holds the Verilog generated from hdl/: SPECMIRROR_VERILOG_DIR when it is
# set (generated once for several builds), else DIR, generated into now.
#   bitstreams/verilog.sh DIR
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${SPECMIRROR_VERILOG_DIR:-}" ]; then
  [ -s "$SPECMIRROR_VERILOG_DIR/target_path.v" ] || { echo "error: SPECMIRROR_VERILOG_DIR=$SPECMIRROR_VERILOG_DIR holds no Verilog generated from hdl/" >&2; exit 1; }
  echo "== Verilog from hdl/, generated before: $SPECMIRROR_VERILOG_DIR" >&2
  echo "$SPECMIRROR_VERILOG_DIR"
  exit 0
fi
echo "== generating Verilog from hdl/" >&2
(cd "$root" && cargo run -q -p specmirror-hdl --bin specmirror-verilog -- "$1" >/dev/null)
echo "$1"
