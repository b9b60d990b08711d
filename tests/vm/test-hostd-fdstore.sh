#!/bin/bash
# SPDX-License-Identifier: MIT
# LONG VM TEST (real QEMU under TCG, ~1 minute): ivsockd restarts (SIGKILL,
# then SIGTERM) under a service manager's file descriptor store
# (tests/tools/fdstore-harness.py) while two real QEMU guests stay connected;
# QEMU does not notice, and the restarted daemon still serves them.
#
#   guest vmA (QEMU)          guest vmB (QEMU)        fake client W
#   ivshmem-doorbell,vectors=2  ivshmem-doorbell,...  (tests/tools)
#            \                    |                   /
#             ivsockd --domain vmt=SOCK,size=16M,vectors=2 (sealed memfd)
#
# After each restart: same format_id (the region was adopted), vmA and vmB
# alive with the same peer IDs and still known as QEMU, W told of no
# disconnect. Then vmA's QEMU is killed: the twice-restarted daemon notices
# on the socket it took back from the store, W receives the disconnect and
# vmB sees vmA leave the directory through BAR2. Exit 77 if QEMU, the
# kernel or busybox are missing.
set -eu
cd "$(dirname "$0")/../.."
. tests/vm/hostd-common.sh
command -v python3 >/dev/null || { echo "SKIP: python3 missing"; exit 77; }
mkdir -p "$VM_DIR/store"
vm_bg ivsockd python3 "$TOP/tests/tools/fdstore-harness.py" "$VM_DIR/store" -- \
	"$TOP/$O/hostd/ivsockd" --foreground --log-level debug \
	--domain "vmt=$SOCK,size=16M,vectors=2" --control "$CTL"
vm_wait_unix "$CTL" 10 || fail "ivsockd did not start"
two_guests_up
pb=$(echo "$list" | jq -r '.vms[] | select(.name=="vmB") | .peer_id')
HP=$(cat "$VM_DIR/ivsockd.pid")

for round in 1 2; do
	if [ $round = 1 ]; then echo "== ivsockd crashes (SIGKILL), restarted"; kill -USR2 "$HP"
	else echo "== ivsockd restarted (SIGTERM)"; kill -USR1 "$HP"; fi
	for i in $(seq 100); do
		[ "$(grep -c '^ready' "$VM_DIR/ivsockd.out")" -gt $round ] && break
		sleep 0.1
	done
	[ "$(grep -c '^ready' "$VM_DIR/ivsockd.out")" -gt $round ] || fail "round $round: no restart"
	list=$(ctl vm list --json)
	[ "$(ctl domain list --json | jq -r '.domains[0].format_id')" = "$fid" ] ||
		fail "round $round: region re-formatted"
	for n in vmA vmB; do
		p=$([ $n = vmA ] && echo "$pa" || echo "$pb")
		echo "$list" | jq -e ".vms[] | select(.name==\"$n\" and .peer_id==$p and .state==\"alive\" and .qemu==true)" >/dev/null ||
			fail "round $round: $n not resumed: $list"
	done
	grep -q "^disconnect" "$VM_DIR/w.out" && fail "round $round: W was told of a disconnect"
	grep -q "resumed QEMU client pid .* peer $pa," "$VM_DIR/ivsockd.out" || fail "round $round: vmA not resumed"
	echo "round $round: vmA (peer $pa) and vmB (peer $pb) resumed, region kept"
done

echo "== kill vmA"
vm_kill vmA
for i in $(seq 100); do
	grep -q "^disconnect $pa\$" "$VM_DIR/w.out" && break
	sleep 0.1
done
grep -q "^disconnect $pa\$" "$VM_DIR/w.out" || fail "W got no disconnect for peer $pa"
st=$(ctl vm list --json | jq -r '.vms[] | select(.name=="vmA") | .state')
[ "$st" != alive ] || fail "vmA still alive after its QEMU died"
echo "restarted daemon: vmA ${st:-reclaimed}; W saw 'disconnect $pa'"
vm_wait_marker "$VM_DIR/vmB.log" 150 || fail "vmB did not finish"
grep -a -q "PEER_GONE $pa" "$VM_DIR/vmB.log" || fail "vmB did not see vmA leave"
rc=$(vm_result "$VM_DIR/vmB.log") || fail "vmB rc=$rc"
vm_log_clean "$VM_DIR/vmB.log" || fail "vmB kernel log"
kill $WPID 2>/dev/null || true
echo "PASS"
