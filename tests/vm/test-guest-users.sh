#!/bin/bash
# SPDX-License-Identifier: MIT
#
# LONG VM TEST (about 1 minute): unprivileged servers accelerated in a real
# QEMU/TCG guest (ivsock.ko, ivsock-agent --backend pci, libivsock.so under
# LD_PRELOAD), every transfer checked byte for byte, proven by the shim's
# counters (IVSOCK_STATS=1). Connections over loopback inside the guest,
# clients as root:
#   1. a pre-forked server whose workers setuid() to uid 1001 and 1002;
#   2. a server that setuid()s to 1001 after listen();
#   3. a per-connection child that setuid()s (1001, 1002) and installs a
#      seccomp filter;
#   4. a server started as uid 1001 and a client as uid 1002 (setpriv).
# The kernel log stays clean; rmmod works afterwards.
# Exit: 0 pass, 1 fail, 77 skip (QEMU, kernel, headers or ivsockd missing).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$here/lib.sh"

O=${O:-build}
case $O in /*) ;; *) O=$top/$O ;; esac
IVSOCKD=$O/hostd/ivsockd

vm_prereqs --kmod || exit 77
[ -x "$IVSOCKD" ] || { echo "SKIP: ivsockd not built" >&2; exit 77; }
for f in preload/libivsock.so preload/tests/shim-stream preload/tests/shim-users; do
	[ -x "$O/$f" ] || [ -f "$O/$f" ] || { echo "SKIP: $O/$f not built" >&2; exit 77; }
done

vm_init
rc=0
t_start=$SECONDS
fail() { echo "FAIL: $*"; rc=1; }
trap vm_cleanup EXIT

make -s -C "$top/guestdrv/kmod" KVER="$VM_KVER" >"$VM_DIR/kmod.log" 2>&1 ||
	{ cat "$VM_DIR/kmod.log"; echo "FAIL: ivsock.ko build"; exit 1; }
make -s -C "$top" O="$O" guest-static >"$VM_DIR/build.log" 2>&1 ||
	{ cat "$VM_DIR/build.log"; echo "FAIL: build"; exit 1; }

cat >"$VM_DIR/guest.sh" <<'GUEST'
# Guest half of test-guest-users.sh (installed as /test.sh).
fail=0
ok() { echo "ok $*"; }
bad() { echo "FAIL $*"; fail=1; }
say() { echo "== $*"; }
MB=$((4 << 20))
SHIM="env LD_PRELOAD=/libivsock.so IVSOCK_STATS=1"
T="timeout -s KILL 120"
# stat FILE NAME: the sum of a shim counter over the file's stats lines
stat() { grep -o "$2=[0-9]*" "$1" | cut -d= -f2 | awk '{s += $1} END {print s + 0}'; }
# client FILE N: N connections accelerated, every byte both ways on the rings
client_ok() {
	[ "$(stat "$1" accelerated_connect)" = "$2" ] &&
	[ "$(stat "$1" ring_tx_bytes)" = $(($2 * MB)) ] &&
	[ "$(stat "$1" ring_rx_bytes)" = $(($2 * MB)) ]
}

ip link set lo up
chmod 755 /
chmod 1777 /tmp
say "insmod ivsock.ko"
insmod /ivsock.ko || { bad "insmod"; exit 1; }
i=0
while [ ! -c /dev/ivsock0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
/ivsock-agent -f -v --backend pci --hostname guest-users >/tmp/agent.log 2>&1 &
apid=$!
i=0
until /ivsock-agent --status 2>/dev/null | grep -q '"registered": true'; do
	i=$((i + 1))
	[ $i -lt 300 ] || { bad "agent never registered"; break; }
	sleep 0.2
done
say "IVSOCK-AGENT-READY"

say "1. pre-forked workers as uid 1001 and 1002"
$T $SHIM /shim-users prefork 7801 2 1001,1002 >/tmp/s1.out 2>&1 &
s=$!
sleep 1
$T $SHIM /shim-stream client 127.0.0.1 7801 $MB 4 >/tmp/c1.out 2>&1
wait $s
client_ok /tmp/c1.out 4 && grep -q "shim-users: ok" /tmp/s1.out &&
	ok "pre-forked workers: 4 connections on the rings, byte-exact" ||
	bad "pre-forked: $(cat /tmp/c1.out /tmp/s1.out)"

say "2. setuid() after listen()"
$T $SHIM /shim-users setuid 7802 2 1001 >/tmp/s2.out 2>&1 &
s=$!
sleep 1
$T $SHIM /shim-stream client 127.0.0.1 7802 $MB 2 >/tmp/c2.out 2>&1
wait $s
client_ok /tmp/c2.out 2 && grep -q "shim-users: ok" /tmp/s2.out &&
	ok "setuid after listen: 2 connections on the rings, byte-exact" ||
	bad "setuid: $(cat /tmp/c2.out /tmp/s2.out)"

say "3. per-connection child: setuid() + seccomp"
$T $SHIM /shim-users seccomp 7804 2 1001,1002 >/tmp/s3.out 2>&1 &
s=$!
sleep 1
$T $SHIM /shim-stream client 127.0.0.1 7804 $MB 2 >/tmp/c3.out 2>&1
wait $s
client_ok /tmp/c3.out 2 && [ "$(grep -c "shim-users: sandboxed" /tmp/s3.out)" = 2 ] &&
	ok "sandboxed children: 2 connections on the rings, byte-exact" ||
	bad "seccomp: $(cat /tmp/c3.out /tmp/s3.out)"

say "4. server as uid 1001, client as uid 1002, from exec"
$T /setpriv --reuid=1001 --regid=1001 --clear-groups $SHIM /shim-stream server 7805 2 \
	>/tmp/s4.out 2>&1 &
s=$!
sleep 1
$T /setpriv --reuid=1002 --regid=1002 --clear-groups $SHIM /shim-stream client 127.0.0.1 7805 \
	$MB 2 >/tmp/c4.out 2>&1
wait $s
client_ok /tmp/c4.out 2 && [ "$(stat /tmp/s4.out accelerated_accept)" = 2 ] &&
	ok "unprivileged server and client: 2 connections on the rings, byte-exact" ||
	bad "unprivileged: $(cat /tmp/c4.out /tmp/s4.out)"

/ivsock-agent --status | grep -A 6 '"broker"'
kill $apid
wait $apid
say "agent log:"
tail -n 10 /tmp/agent.log
rmmod ivsock || bad "rmmod"
if dmesg | grep -E 'WARNING|BUG|Oops|Call Trace'; then
	bad "kernel complained"
fi
say "fail=$fail"
exit $fail
GUEST

"$here/mkinitramfs.sh" "$VM_DIR/initrd.gz" \
	"$top/guestdrv/kmod/ivsock.ko:/ivsock.ko" \
	"$O/guest-static/ivsock-agent:/ivsock-agent" \
	"$O/preload/libivsock.so:/libivsock.so" \
	"$O/preload/tests/shim-stream:/shim-stream" \
	"$O/preload/tests/shim-users:/shim-users" \
	"$(command -v setpriv):/setpriv" \
	"$VM_DIR/guest.sh:/test.sh"

vm_bg ivsockd "$IVSOCKD" --foreground --domain "lab=$VM_DIR/lab.sock,size=64M,vectors=4" \
	--control "$VM_DIR/ctl.sock"
vm_wait_unix "$VM_DIR/ctl.sock" 20 || { cat "$VM_DIR/ivsockd.out"; echo "FAIL: ivsockd"; exit 1; }
vm_start gu "$VM_DIR/gu.log" "$VM_DIR/initrd.gz" --ivshmem "$VM_DIR/lab.sock,4"
vm_wait_marker "$VM_DIR/gu.log" 400 || fail "guest: no result marker (timeout)"
grep -a -E '^(ok|FAIL)|^== ' "$VM_DIR/gu.log" | sed "s/^/[gu] /"
r=$(vm_result "$VM_DIR/gu.log") || true
[ "$r" = 0 ] || fail "guest rc=$r (log $VM_DIR/gu.log)"
vm_log_clean "$VM_DIR/gu.log" || fail "guest: kernel warnings (log $VM_DIR/gu.log)"
vm_cleanup
if [ $rc = 0 ]; then
	echo "PASS: test-guest-users ($((SECONDS - t_start)) s)"
	[ -n "${KEEP:-}" ] || rm -rf "$VM_DIR"
else
	echo "FAIL: test-guest-users, logs kept in $VM_DIR"
	trap - EXIT
fi
exit $rc
