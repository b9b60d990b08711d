# SPDX-License-Identifier: MIT
# Shared set-up of the ivsockd-with-real-QEMU tests (test-hostd-qemu.sh,
# test-hostd-fdstore.sh): prerequisites, work dir, helpers, the directory
# entry geometry and the guest script. Sourced after `cd` to the top.
TOP=$PWD
O=${O:-build}
. tests/vm/lib.sh
vm_prereqs || exit 77
for b in "$O/hostd/ivsockd" "$O/hostd/ivsockctl" "$O/tests/tools/ivshmem-fake-client"; do
	[ -x "$b" ] || { echo "SKIP: $b not built"; exit 77; }
done
command -v jq >/dev/null || { echo "SKIP: jq missing"; exit 77; }
command -v cc >/dev/null || { echo "SKIP: cc missing"; exit 77; }

vm_init
SHM=/dev/shm/ivsock-vmtest-$$
trap 'vm_cleanup; rm -f "$SHM"' EXIT
SOCK=$VM_DIR/vmt.sock
CTL=$VM_DIR/ctl.sock
ctl() { "$TOP/$O/hostd/ivsockctl" -s "$CTL" "$@"; }
fail() { echo "FAIL: $*"; tail -n 30 "$VM_DIR/ivsockd.out" 2>/dev/null; exit 1; }

# Directory entry size and the superblock offsets the guest reads, from the
# headers the daemon was built with (passed on the guest's command line).
cat >"$VM_DIR/sz.c" <<'C'
#include <stdio.h>
#include <stddef.h>
#include "ivsock/layout.h"
int main(void) { printf("%zu %zu %zu %zu %zu\n", sizeof(struct ivsock_vm_entry),
	offsetof(struct ivsock_vm_entry, peer_id), offsetof(struct ivsock_superblock, vm_off),
	offsetof(struct ivsock_superblock, vm_cap),
	offsetof(struct ivsock_superblock, daemon_peer_id)); return 0; }
C
cc -std=gnu11 -Iprotocol/include -o "$VM_DIR/sz" "$VM_DIR/sz.c"
read -r VMSZ PEEROFF SBVMOFF SBVMCAP SBDPEER < <("$VM_DIR/sz")
# what every guest gets on its command line
GEOM="ivsock.vmsz=$VMSZ ivsock.peeroff=$PEEROFF ivsock.sbvmoff=$SBVMOFF ivsock.sbvmcap=$SBVMCAP ivsock.sbdpeer=$SBDPEER"

# The guest: find the ivshmem device, read BAR0/BAR2 with devmem.
cat >"$VM_DIR/test.sh" <<'GUEST'
#!/bin/sh
dev=""
for d in /sys/bus/pci/devices/*; do
	[ "$(cat $d/vendor)" = 0x1af4 ] && [ "$(cat $d/device)" = 0x1110 ] && dev=$d
done
[ -n "$dev" ] || { echo "no ivshmem-doorbell device"; exit 1; }
echo 1 >"$dev/enable" 2>/dev/null
bar0=$(sed -n 1p "$dev/resource" | cut -d' ' -f1)
bar2=$(sed -n 3p "$dev/resource" | cut -d' ' -f1)
echo "BAR0=$bar0 BAR2=$bar2"
ivpos=$(devmem $((bar0 + 8)) 32)
magic=$(devmem $bar2 64)
fid=$(devmem $((bar2 + 24)) 64)
dpeer=$(devmem $((bar2 + IVSOCK_SBDPEER)) 32)
echo "IVPOS=$((ivpos)) MAGIC=$magic FID=$fid DPEER=$((dpeer))"
[ "$IVSOCK_ROLE" = stay ] && { sleep 600; exit 0; }
# Wait until the peer given on the command line leaves the directory: seen
# alive first, then absent in two scans in a row (an entry being rewritten
# by the daemon can be missed by one scan of devmem reads).
vmoff=$(devmem $((bar2 + IVSOCK_SBVMOFF)) 64)
vmcap=$(devmem $((bar2 + IVSOCK_SBVMCAP)) 32)
end=$(( $(date +%s) + 150 ))
seen=0; absent=0
while [ "$(date +%s)" -lt $end ]; do
	i=0; alive=0
	while [ $i -lt $((vmcap)) ]; do
		e=$((bar2 + vmoff + i * IVSOCK_VMSZ))
		st=$(( ($(devmem $((e + 4)) 32) & 0xff) ))
		pid=$(( $(devmem $((e + IVSOCK_PEEROFF)) 32) ))
		[ $st = 2 ] && [ $pid = "$IVSOCK_WATCH" ] && alive=1
		i=$((i + 1))
	done
	[ $alive = 1 ] && { seen=1; absent=0; }
	[ $alive = 0 ] && [ $seen = 1 ] && absent=$((absent + 1))
	if [ $absent -ge 2 ]; then echo "PEER_GONE $IVSOCK_WATCH"; exit 0; fi
	sleep 1
done
[ $seen = 1 ] && echo "peer $IVSOCK_WATCH still alive in the directory" ||
	echo "peer $IVSOCK_WATCH never seen alive in the directory"
exit 1
GUEST

echo "== ivsockd"
