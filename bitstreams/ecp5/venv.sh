#!/usr/bin/env bash
# Creates (once) the venv that holds the ECP5 toolchain and LiteX/LiteEth, installs the pinned
# versions of bitstreams/ecp5/requirements.txt into it, and prints the venv's python on stdout.
# The ECP5 board build and the simulated NIC (sim/verilated with the `nic` feature) both use it.
#
#   bitstreams/ecp5/venv.sh        (SPECMIRROR_ECP5_VENV names the venv,
#                                   default ~/.cache/specmirror/ecp5-venv)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${SPECMIRROR_ECP5_VENV:-$HOME/.cache/specmirror/ecp5-venv}
command -v python3 >/dev/null || { echo "error: python3 is not installed (Debian packages python3, python3-venv)" >&2; exit 1; }
if [ ! -x "$venv/bin/python" ]; then
  echo "== creating the toolchain venv in $venv" >&2
  python3 -m venv "$venv" || { echo "error: cannot create a venv (Debian package python3-venv)" >&2; exit 1; }
fi
echo "== installing the pinned toolchain (bitstreams/ecp5/requirements.txt) into $venv" >&2
"$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt" >&2
echo "$venv/bin/python"
