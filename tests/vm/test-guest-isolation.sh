#!/bin/bash
# SPDX-License-Identifier: MIT
#
# LONG VM TEST (about 1 minute): least privilege inside a real QEMU/TCG
# guest. ivsock.ko + ivsock-agent --backend pci, every local user admitted.
#
#   user A (uid 1001): ivsock-stream listen 7100 and send 127.0.0.1 7100,
#                      64 MiB of a known 16-byte pattern through the region
#   user B (uid 1002): ivsock-snoop: every interface it has (the device node,
#                      /proc of A, the tables window the agent hands anyone,
#                      the broker requests on A's channel, writes to the
#                      tables) -> refused each time, and A's bytes are not in
#                      anything B can map
#   root:              ivsock-snoop --control maps BAR2 and finds the pattern
#                      (the scan would see it if B could reach it)
#
# Checks: A's transfer is byte-exact and went through the rings (agent status:
# a connected channel owned by uid 1001); every attack of B fails; the kernel
# log stays clean; rmmod works afterwards.
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
# Guest half of test-guest-isolation.sh (installed as /test.sh).
fail=0
ok() { echo "ok $*"; }
bad() { echo "FAIL $*"; fail=1; }
say() { echo "== $*"; }
PAT=c0ffee00ba5eba11deadbeef5ca1ab1e
asA() { /setpriv --reuid=1001 --regid=1001 --clear-groups "$@"; }
asB() { /setpriv --reuid=1002 --regid=1002 --clear-groups "$@"; }

ip link set lo up
# the initramfs root is made with mktemp -d (0700): let the users in
chmod 755 /
chmod 1777 /tmp
say "insmod ivsock.ko"
insmod /ivsock.ko || { bad "insmod"; exit 1; }
i=0
while [ ! -c /dev/ivsock0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
ls -l /dev/ivsock0
/ivsock-agent -f -v --backend pci --hostname guest-iso >/tmp/agent.log 2>&1 &
apid=$!
i=0
until /ivsock-agent --status 2>/dev/null | grep -q '"registered": true'; do
	i=$((i + 1))
	[ $i -lt 300 ] || { bad "agent never registered"; break; }
	sleep 0.2
done
say "IVSOCK-AGENT-READY"

say "user A streams 64 MiB of the pattern to itself"
asA timeout -s KILL 200 /ivsock-stream --fill $PAT --count 1 listen 7100 >/tmp/ra.out 2>&1 &
rpid=$!
sleep 1
asA timeout -s KILL 200 /ivsock-stream --fill $PAT --spin 0 send 127.0.0.1 7100 $((64 << 20)) >/tmp/sa.out 2>&1 &
spid=$!
i=0
until /ivsock-agent --status | grep -q '"state": "connected"'; do
	i=$((i + 1))
	[ $i -lt 300 ] || { bad "A's connection never got a channel: $(cat /tmp/ra.out /tmp/sa.out; tail -n 20 /tmp/agent.log)"; break; }
	sleep 0.1
done
/ivsock-agent --status >/tmp/status.json
grep -q '"uid": 1001' /tmp/status.json && ok "A's channel ends are owned by uid 1001" ||
	bad "no end owned by uid 1001: $(cat /tmp/status.json)"

say "root: the pattern is in BAR2 (positive control)"
/ivsock-snoop --control --pattern $PAT && ok "control: the scan finds A's bytes in BAR2" ||
	bad "control: the pattern is not in BAR2, the scans below prove nothing"

say "user B attacks A's connection"
asB /ivsock-snoop --port 7100 --pattern $PAT --victim $spid >/tmp/snoop.out 2>&1
src=$?
cat /tmp/snoop.out
[ $src -eq 0 ] && ok "every attack of user B failed" || bad "user B got through (rc $src)"
grep -q '^LEAK' /tmp/snoop.out && bad "leaks: $(grep '^LEAK' /tmp/snoop.out)"

wait $spid
s=$?
wait $rpid
r=$?
cat /tmp/sa.out /tmp/ra.out
[ $s -eq 0 ] && [ $r -eq 0 ] && grep -q "^OK bytes=$((64 << 20)) " /tmp/ra.out &&
	ok "A's 64 MiB arrived byte-exact over the rings" || bad "A's transfer: send rc $s, recv rc $r"

/ivsock-agent --status | grep -A 3 '"broker"'
kill $apid
wait $apid
say "agent log:"
tail -n 15 /tmp/agent.log
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
	"$O/guest-static/ivsock-stream:/ivsock-stream" \
	"$O/guest-static/ivsock-snoop:/ivsock-snoop" \
	"$(command -v setpriv):/setpriv" \
	"$VM_DIR/guest.sh:/test.sh"

vm_bg ivsockd "$IVSOCKD" --foreground --domain "lab=$VM_DIR/lab.sock,size=32M,vectors=4" \
	--control "$VM_DIR/ctl.sock"
vm_wait_unix "$VM_DIR/ctl.sock" 20 || { cat "$VM_DIR/ivsockd.out"; echo "FAIL: ivsockd"; exit 1; }
vm_start gi "$VM_DIR/gi.log" "$VM_DIR/initrd.gz" --ivshmem "$VM_DIR/lab.sock,4"
vm_wait_marker "$VM_DIR/gi.log" 300 || fail "guest: no result marker (timeout)"
grep -a -E '^(ok|FAIL|LEAK|control|snoop)|^== ' "$VM_DIR/gi.log" | sed "s/^/[gi] /"
r=$(vm_result "$VM_DIR/gi.log") || true
[ "$r" = 0 ] || fail "guest rc=$r (log $VM_DIR/gi.log)"
vm_log_clean "$VM_DIR/gi.log" || fail "guest: kernel warnings (log $VM_DIR/gi.log)"
vm_cleanup
if [ $rc = 0 ]; then
	echo "PASS: test-guest-isolation ($((SECONDS - t_start)) s)"
	[ -n "${KEEP:-}" ] || rm -rf "$VM_DIR"
else
	echo "FAIL: test-guest-isolation, logs kept in $VM_DIR"
	trap - EXIT
fi
exit $rc
