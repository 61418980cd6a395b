#!/usr/bin/env bash
# Proves the VFIO backend on a real VFIO device without an FPGA: boots a QEMU guest (TCG) with an
# emulated Intel IOMMU and QEMU's `edu` PCI devices, whose kernel binds them to vfio-pci and runs
# `specmirror probe` and `vfio-edu-check` from this workspace (see guest-init.sh for the steps).
# A second, short boot without an IOMMU checks that error path. Prints every step; exits non-zero
# unless every step passed in both boots.
#
# Needs: qemu-system-x86 (installed here if missing, as root), and from Debian's archive a cloud
# kernel and busybox-static, downloaded and unpacked under target/vfio-guest (no install).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
work=$root/target/vfio-guest
kernel_pkg=linux-image-cloud-amd64
mkdir -p "$work"
say() { echo "== vfio: $*"; }

if ! command -v qemu-system-x86_64 >/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: qemu-system-x86_64 is missing; install Debian's qemu-system-x86 (as root)" >&2
    exit 1
  fi
  say "installing qemu-system-x86"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null
fi

# The guest kernel and busybox come from Debian packages, unpacked, not installed.
fetch_deb() { # package -> unpacked into $work/pkg/<package>
  local p=$1 dir=$work/pkg/$1
  [ -e "$dir/.done" ] && return
  rm -rf "$dir" && mkdir -p "$dir"
  ( cd "$work/pkg" && { apt-get download "$p" >/dev/null 2>&1 || { apt-get update -qq && apt-get download "$p" >/dev/null; }; } ) \
    || { echo "error: apt-get download $p failed: Debian's archive must be reachable" >&2; exit 1; }
  dpkg-deb -x "$work/pkg/${p}"_*.deb "$dir"
  touch "$dir/.done"
}
fetch_deb busybox-static
fetch_deb "$kernel_pkg"
image=$(dpkg-deb -f "$work/pkg/${kernel_pkg}"_*.deb Depends | sed -n 's/^\(linux-image-[^ ,]*\).*/\1/p')
fetch_deb "$image"
kdir=$work/pkg/$image
vmlinuz=$(ls "$kdir"/boot/vmlinuz-*)
modules=$(ls -d "$kdir"/lib/modules/*)
say "guest kernel $(basename "$vmlinuz")"

say "building specmirror and vfio-edu-check"
# The test profile (its output is target/debug too): what `cargo test` built already is reused,
# with the features it was built with (./test.sh sets SPECMIRROR_FEATURES).
cargo build -q --profile test -p specmirror -p specmirror-driver --bins ${SPECMIRROR_FEATURES:-}
bin=$root/target/debug

# The initramfs: busybox, the two binaries with their shared libraries, the modules, /init.
initrd=$work/initrd
rm -rf "$initrd" && mkdir -p "$initrd"/{bin,lib/modules,proc,sys,dev,tmp}
cp "$work/pkg/busybox-static/bin/busybox" "$initrd/bin/"
for a in $("$initrd/bin/busybox" --list); do
  [ "$a" = busybox ] || ln -sf busybox "$initrd/bin/$a"
done
for b in specmirror vfio-edu-check; do
  strip -o "$initrd/bin/$b" "$bin/$b"
  for lib in $(ldd "$bin/$b" | grep -o '/[^ ]*'); do
    mkdir -p "$initrd$(dirname "$lib")" && cp -L "$lib" "$initrd$lib"
  done
done
# The modules the guest loads, with their dependencies first (read from each module's
# `depends=`: the kernel package ships no modules.dep, and the list changes between versions).
find_ko() { # module name -> its file (names mix - and _)
  find "$modules/kernel" \( -name "$1.ko" -o -name "$(echo "$1" | tr _ -).ko" -o -name "$(echo "$1" | tr - _).ko" \) | head -1
}
order=()
add_module() {
  local name=$1 f dep
  for m in "${order[@]}"; do [ "$m" = "$name" ] && return; done
  f=$(find_ko "$name")
  [ -n "$f" ] || { echo "error: module $name not in $(basename "$modules")" >&2; exit 1; }
  for dep in $(strings "$f" | sed -n 's/^depends=//p' | tr , ' '); do add_module "$dep"; done
  cp "$f" "$initrd/lib/modules/$name.ko"
  order+=("$name")
}
add_module vfio-pci
add_module vfio_iommu_type1   # the container's IOMMU backend: nothing links against it
add_module virtio_pci
printf '%s\n' "${order[@]}" > "$initrd/lib/modules/load-order"
say "guest modules: ${order[*]}"
cp tests/vfio/guest-init.sh "$initrd/init"
chmod +x "$initrd/init"
( cd "$initrd" && find . | "$work/pkg/busybox-static/bin/busybox" cpio -o -H newc 2>/dev/null ) | gzip -1 > "$work/initrd.cpio.gz"
say "initramfs $(du -h "$work/initrd.cpio.gz" | cut -f1)"

boot() { # scenario, extra qemu args...
  local scenario=$1; shift
  local log=$work/guest-$scenario.log
  say "booting the guest ($scenario)"
  local start=$SECONDS
  timeout 150 qemu-system-x86_64 -machine q35 -accel tcg -cpu max -m 768 -smp 1 \
    -nographic -no-reboot -monitor none -serial stdio \
    -kernel "$vmlinuz" -initrd "$work/initrd.cpio.gz" \
    -append "console=ttyS0 panic=-1 quiet loglevel=3 specmirror.scenario=$scenario $KARGS" \
    "$@" > "$log" 2>&1 || true
  tr -d '\r' < "$log" | grep -E '^(STEP|VFIO-RESULT|guest:)' | sed 's/^/   /' || true
  say "$scenario: $((SECONDS - start)) s"
  if ! tr -d '\r' < "$log" | grep -q '^VFIO-RESULT PASS'; then
    echo "error: the $scenario guest did not pass; its console log follows" >&2
    tr -d '\r' < "$log" | tail -60 >&2
    return 1
  fi
}

# edu A alone behind bridge br0; edu B and a virtio RNG share bridge br1 (so one IOMMU group).
KARGS="intel_iommu=on"
boot iommu -device intel-iommu,intremap=on,caching-mode=on \
  -device pci-bridge,id=br0,chassis_nr=1 -device edu,bus=br0,addr=1 \
  -device pci-bridge,id=br1,chassis_nr=2 -device edu,bus=br1,addr=1 \
  -device virtio-rng-pci,bus=br1,addr=2
KARGS="intel_iommu=off"
boot noiommu -device edu
say "every step passed"
