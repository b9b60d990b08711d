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

# The fake client W, then vmA (stays) and vmB (watches vmA leave), each
# checked against the daemon's view: listed alive with its -uuid,
# IVPosition == its peer ID, BAR2's magic, format_id and daemon peer. Sets
# WPID, fid, UA, UB and pa (vmA's peer ID).
two_guests_up() {
	"$TOP/$O/tests/tools/ivshmem-fake-client" -v 2 -r w,10.99.0.1 -s 400 "$SOCK" >"$VM_DIR/w.out" &
	WPID=$!
	for i in $(seq 50); do grep -q own_id "$VM_DIR/w.out" && break; sleep 0.1; done
	fid=$(ctl domain list --json | jq -r '.domains[0].format_id')
	echo "format_id $fid"

	echo "== boot vmA (stays) and learn its peer ID"
	UA=6b1d6a0e-1111-4a4a-9a9a-00000000000a
	UB=6b1d6a0e-2222-4b4b-9b9b-00000000000b
	"$VM_DIR/sz" >/dev/null
	VM_MODULES="" tests/vm/mkinitramfs.sh "$VM_DIR/initrd.gz" "$VM_DIR/test.sh:/test.sh"
	vm_start vmA "$VM_DIR/vmA.log" "$VM_DIR/initrd.gz" --ivshmem "$SOCK,2" --uuid $UA \
		--append "ivsock.role=stay $GEOM"
	for i in $(seq 100); do
		pa=$(ctl vm list --json | jq -r '.vms[] | select(.name=="vmA") | .peer_id')
		[ -n "$pa" ] && break
		sleep 0.2
	done
	[ -n "$pa" ] || fail "vmA never connected"
	vm_start vmB "$VM_DIR/vmB.log" "$VM_DIR/initrd.gz" --ivshmem "$SOCK,2" --uuid $UB \
		--append "ivsock.role=watch ivsock.watch=$pa $GEOM"
	vm_wait_marker "$VM_DIR/vmA.log" 120 "IVPOS=" || fail "vmA: no BAR readout"
	vm_wait_marker "$VM_DIR/vmB.log" 120 "IVPOS=" || fail "vmB: no BAR readout"
	grep -a "IVPOS=" "$VM_DIR/vmA.log" "$VM_DIR/vmB.log"

	echo "== compare guest view with the daemon's"
	list=$(ctl vm list --json)
	echo "$list" | jq -c '.vms[] | {name, peer_id, state, uuid}'
	ctl vm list
	for n in vmA vmB; do
		u=$([ $n = vmA ] && echo $UA || echo $UB)
		p=$(echo "$list" | jq -r ".vms[] | select(.name==\"$n\" and .state==\"alive\") | .peer_id")
		[ -n "$p" ] || fail "$n not listed alive"
		echo "$list" | jq -e ".vms[] | select(.name==\"$n\") | .uuid==\"$u\"" >/dev/null ||
			fail "$n uuid"
		line=$(grep -a "IVPOS=" "$VM_DIR/$n.log" | tail -n 1 | tr -d '\r')
		ivpos=$(echo "$line" | sed -n 's/.*IVPOS=\([0-9]*\).*/\1/p')
		magic=$(echo "$line" | sed -n 's/.*MAGIC=\(0x[0-9A-Fa-f]*\).*/\1/p')
		gfid=$(echo "$line" | sed -n 's/.*FID=\(0x[0-9A-Fa-f]*\).*/\1/p')
		dpeer=$(echo "$line" | sed -n 's/.*DPEER=\([0-9]*\).*/\1/p')
		[ "$ivpos" = "$p" ] || fail "$n: IVPosition $ivpos != daemon's peer id $p"
		[ $((magic)) = $((0x3130524B434F5356)) ] || fail "$n: magic $magic"
		[ "$(printf '%016x' $((gfid)))" = "$fid" ] || fail "$n: format_id $gfid != $fid"
		[ "$dpeer" = 0 ] || fail "$n: daemon peer $dpeer"
		echo "$n: IVPosition $ivpos == peer id, BAR2 magic and format_id match"
		grep -q "^connect $p\$" "$VM_DIR/w.out" || fail "W was not told about $n"
	done
	grep -q "QEMU client pid .* 'vmA'" "$VM_DIR/ivsockd.out" || fail "vmA not identified as QEMU"
}
