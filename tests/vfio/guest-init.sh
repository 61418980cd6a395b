#!/bin/sh
# /init of the test guest (see run.sh): loads VFIO, then checks the VFIO backend step by step on
# QEMU's edu devices. Every check prints `STEP name ok|FAIL detail`; the last line is
# `VFIO-RESULT PASS` or `VFIO-RESULT FAIL`. The kernel command line picks the scenario:
# specmirror.scenario=iommu (the default) or specmirror.scenario=noiommu.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /tmp /etc && mount -t tmpfs tmpfs /tmp

# Every STEP line also goes to /tmp/steps, for the verdict.
ok() { echo "STEP $1 ok $2" | tee -a /tmp/steps; }
fail() { echo "STEP $1 FAIL $2" | tee -a /tmp/steps; }
finish() {
  if grep -q '^STEP [^ ]* FAIL' /tmp/steps; then echo "VFIO-RESULT FAIL"; else echo "VFIO-RESULT PASS"; fi
  sync
  poweroff -f
}
touch /tmp/steps

scenario=$(sed -n 's/.*specmirror\.scenario=\([a-z]*\).*/\1/p' /proc/cmdline)
scenario=${scenario:-iommu}
echo "guest: kernel $(uname -r), scenario $scenario"

# The modules in dependency order (run.sh wrote it from each module's depends=).
for m in $(cat /lib/modules/load-order); do
  if err=$(insmod /lib/modules/$m.ko 2>&1); then :; else fail insmod "$m: $err"; fi
done

# The edu devices (1234:11e8) and the virtio RNG (1af4:1005 or 1af4:1044).
dev_of() { for d in /sys/bus/pci/devices/*; do
  [ "$(cat $d/vendor):$(cat $d/device)" = "$1" ] && basename $d; done; }
edus=$(dev_of 0x1234:0x11e8)
rng=$(dev_of 0x1af4:0x1005; dev_of 0x1af4:0x1044)
group_of() { basename "$(readlink /sys/bus/pci/devices/$1/iommu_group)"; }

probe() { /bin/specmirror probe --device "vfio:$1" > /tmp/probe.out 2>&1; echo $? > /tmp/probe.rc; cat /tmp/probe.out; }
has() { grep -q -- "$1" /tmp/probe.out; }
check() { # name, then grep patterns that must all be in the last probe's output
  name=$1; shift
  for p in "$@"; do
    has "$p" || { fail $name "probe output lacks: $p"; sed 's/^/    | /' /tmp/probe.out; return; }
  done
  ok $name "probe said: $(grep -m1 -E 'FAIL|result' /tmp/probe.out)"
}

if [ "$scenario" = noiommu ]; then
  a=$(echo $edus | cut -d' ' -f1)
  [ -n "$a" ] || { fail devices "no edu device"; finish; }
  [ -z "$(ls /sys/kernel/iommu_groups 2>/dev/null)" ] && ok no-iommu "the kernel has no IOMMU groups" \
    || fail no-iommu "IOMMU groups exist: $(ls /sys/kernel/iommu_groups)"
  probe $a
  check error-no-iommu "has no IOMMU group" "intel_iommu=on" "result: not usable"
  finish
fi

# With the IOMMU: edu A is alone in its group (behind its own bridge); edu B shares one with the RNG.
a= b=
for e in $edus; do
  if [ -n "$rng" ] && [ "$(group_of $e)" = "$(group_of $rng)" ]; then b=$e; else a=$e; fi
done
if [ -z "$a" ] || [ -z "$b" ]; then
  fail devices "edu devices: '$edus', RNG: '$rng'"; finish
fi
ok devices "edu $a (group $(group_of $a)), edu $b with the RNG $rng (group $(group_of $b))"
rng_drv=$(basename "$(readlink /sys/bus/pci/devices/$rng/driver)" 2>/dev/null)
[ "$rng_drv" = virtio-pci ] && ok rng-bound "the RNG is bound to virtio-pci, so group $(group_of $b) is not viable" \
  || fail rng-bound "the RNG is bound to '$rng_drv', not virtio-pci (did virtio_pci load?)"

# 1. Not bound to vfio-pci: the error prints the commands; run exactly those.
probe $a
check error-not-bound "not vfio-pci" "driver_override" "drivers_probe"
sed -n 's/^ *\(echo .*\|modprobe .*\)$/\1/p' /tmp/probe.out > /tmp/bind.sh
sh /tmp/bind.sh
drv=$(basename "$(readlink /sys/bus/pci/devices/$a/driver)")
[ "$drv" = vfio-pci ] && ok bind "the printed commands bound $a to vfio-pci" \
  || fail bind "after the printed commands $a is bound to '$drv'"

# 2. A foreign device: every generic check passes, the register block is refused.
probe $a
check probe-edu "ok   kernel" "IOMMU group" "ok   bars" "BAR0: 1048576 bytes, mmap" \
  "unknown block id 0x010000ed" "ok   dma" "ok   interrupts" "ok   reset" "result: not usable"
[ "$(cat /tmp/probe.rc)" != 0 ] && ok probe-exit "probe exits $(cat /tmp/probe.rc) on a foreign device" \
  || fail probe-exit "probe exited 0 on a foreign device"

# 2b. The hardware engine on it: refused by the same check, before anything is written.
/bin/specmirror source --engine hw --device "vfio:$a" --volume /tmp/hw.img --size 1M \
  --target 127.0.0.1:9 --nbd 127.0.0.1:0 --log /tmp/hw.log > /tmp/hw.out 2>&1
rc=$?
if [ $rc != 0 ] && grep -q "not a specmirror device" /tmp/hw.out && [ ! -e /tmp/hw.img ] && [ ! -e /tmp/hw.log ]; then
  ok engine-hw-refused "source --engine hw --device vfio:$a exits $rc: $(grep -o 'not a specmirror device[^,]*' /tmp/hw.out | head -1)"
else
  fail engine-hw-refused "exit $rc, volume $(ls /tmp/hw.img 2>&1): $(cat /tmp/hw.out)"
fi

# 3. The generic layer for real: registers, DMA through the IOMMU, MSI, unmap, reset.
/bin/vfio-edu-check $a > /tmp/edu.out 2>&1
rc=$?
grep '^STEP ' /tmp/edu.out | tee -a /tmp/steps
grep -v '^STEP ' /tmp/edu.out
[ $rc = 0 ] && grep -q '^ALL ok' /tmp/edu.out && ok edu-check "every generic-layer check passed" \
  || fail edu-check "vfio-edu-check exited $rc"

# 4. No permission on /dev/vfio/N: an unprivileged user.
echo 'nobody:x:65534:65534:nobody:/:/bin/sh' > /etc/passwd
echo 'nogroup:x:65534:' > /etc/group
su nobody -s /bin/sh -c "/bin/specmirror probe --device vfio:$a" > /tmp/probe.out 2>&1
check error-permission "no permission to open /dev/vfio/$(group_of $a)" "ulimit -l"

# 5. A group that is not viable: B bound to vfio-pci, the RNG still to virtio-pci.
echo vfio-pci > /sys/bus/pci/devices/$b/driver_override
echo $b > /sys/bus/pci/drivers_probe
probe $b
check error-not-viable "is not viable" "$rng (virtio-pci)" "$rng/driver/unbind"
sed -n 's/^ *\(echo .*unbind\)$/\1/p' /tmp/probe.out > /tmp/unbind.sh
sh /tmp/unbind.sh
probe $b
check viable-after-unbind "ok   kernel" "ok   dma"

finish
