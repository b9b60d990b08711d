#!/bin/bash
# SPDX-License-Identifier: MIT
# LONG VM TEST (real QEMU under TCG, ~1 minute): ivsockd serves two real
# QEMU guests through ivshmem-doorbell; no guest driver is needed.
#
#   guest vmA (QEMU)          guest vmB (QEMU)        fake client W
#   ivshmem-doorbell,vectors=2  ivshmem-doorbell,...  (tests/tools)
#            \                    |                   /
#             ivsockd --domain vmt=SOCK,size=16M,vectors=2 (sealed memfd)
#
# Shows from inside each guest, with busybox devmem on the BAR addresses of
# /sys/bus/pci/devices/*/resource, that BAR0 IVPosition (offset 8) is the
# peer ID ivsockd assigned and that BAR2 holds the region ivsockd formatted
# (magic, format_id, daemon_peer_id of the superblock); that
# `ivsockctl vm list --json` lists both alive with their -name, -uuid and
# peer IDs; then kills vmA and shows the daemon marks it gone, W receives
# the disconnect announcement, and vmB sees vmA leave the directory (read
# through BAR2). Exit 77 if QEMU, the kernel or busybox are missing.
set -eu
cd "$(dirname "$0")/../.."
. tests/vm/hostd-common.sh
vm_bg ivsockd "$TOP/$O/hostd/ivsockd" --foreground --log-level debug \
	--domain "vmt=$SOCK,size=16M,vectors=2" --control "$CTL"
vm_wait_unix "$CTL" 10 || fail "ivsockd did not start"
two_guests_up

echo "== kill vmA"
vm_kill vmA
for i in $(seq 100); do
	grep -q "^disconnect $pa\$" "$VM_DIR/w.out" && break
	sleep 0.1
done
grep -q "^disconnect $pa\$" "$VM_DIR/w.out" || fail "W got no disconnect for peer $pa"
st=$(ctl vm list --json | jq -r '.vms[] | select(.name=="vmA") | .state')
[ "$st" != alive ] || fail "vmA still alive after its QEMU died"
echo "daemon: vmA ${st:-reclaimed}; W saw 'disconnect $pa'"
vm_wait_marker "$VM_DIR/vmB.log" 150 || fail "vmB did not finish"
grep -a -q "PEER_GONE $pa" "$VM_DIR/vmB.log" || fail "vmB did not see vmA leave"
rc=$(vm_result "$VM_DIR/vmB.log") || fail "vmB rc=$rc"
vm_log_clean "$VM_DIR/vmB.log" || fail "vmB kernel log"
kill $WPID 2>/dev/null || true
echo "PASS"
