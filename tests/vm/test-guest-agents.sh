#!/bin/bash
# SPDX-License-Identifier: MIT
#
# LONG VM TEST (1-3 minutes): ivsock-agent with the pci backend in two real
# QEMU/TCG guests, plus a simulated VM on the host, all in one ivsockd
# domain, and TCP rendezvous over a real shared Ethernet segment.
#
#   ivsockd --domain lab=$VM_DIR/lab.sock (host)
#      |  ivshmem protocol, vectors=4
#      +-- QEMU "ga": ivsock.ko, /dev/ivsock0, ivsock-agent --backend pci
#      +-- QEMU "gb": ivsock.ko, /dev/ivsock0, ivsock-agent --backend pci
#      +-- netns $HNS: ivsock-agent --server (the host peer)
#
#   Ethernet: agent-nethub (tests/tools/agent-nethub.c), a hub on a UNIX
#   socket that both guests join with -netdev stream, and a TAP device in
#   netns $HNS, so every TCP connection below is a real one:
#      ga eth0 10.77.0.1/24 -- hub -- gb eth0 10.77.0.2/24
#                               |
#                        tap (netns $HNS) 10.77.0.3/24
#
# Checks: both guest agents attach and register (ivsockctl vm list --json
# shows the right IPs); 16 MiB ga -> gb through the region, checksummed,
# with doorbell wake-ups both ways; 8 MiB host -> gb and 4 MiB gb -> host;
# kill -9 of a sender in ga mid-stream -> gb sees a reset and ga's agent
# reclaims the channel (ivsockctl channels empty, ga's rings back to 0);
# gb's device unbound from the driver under its agent: the agent notices
# (POLLHUP) and exits 1 without touching the region; rmmod works; no WARNING/BUG/Oops in the guests'
# kernel logs.
# Exit: 0 pass, 1 fail, 77 skip (QEMU, kernel, headers or ivsockd missing).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$here/lib.sh"

O=${O:-build}
case $O in /*) ;; *) O=$top/$O ;; esac
IVSOCKD=$O/hostd/ivsockd
IVSOCKCTL=$O/hostd/ivsockctl

vm_prereqs --kmod || exit 77
[ -x "$IVSOCKD" ] && [ -x "$IVSOCKCTL" ] || { echo "SKIP: ivsockd not built" >&2; exit 77; }
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root (netns, tap)" >&2; exit 77; }
[ -c /dev/net/tun ] || { echo "SKIP: no /dev/net/tun" >&2; exit 77; }
command -v jq >/dev/null || { echo "SKIP: jq missing" >&2; exit 77; }

vm_init
HNS=ivsgh$$
TAP=ivstap$$
rc=0
t_start=$SECONDS
fail() { echo "FAIL: $*"; rc=1; }

host_cleanup() {
	for p in ${HOST_PIDS:-}; do kill -9 "$p" 2>/dev/null || true; done
	vm_cleanup
	ip netns del "$HNS" 2>/dev/null || true
}
trap host_cleanup EXIT

wait_for() { # SECONDS CMD...
	local end=$((SECONDS + $1)); shift
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.2
	done
}

# ---- build: module, static agent and stream tool, hub, initramfs ----
make -s -C "$top/guestdrv/kmod" KVER="$VM_KVER" >"$VM_DIR/kmod.log" 2>&1 ||
	{ cat "$VM_DIR/kmod.log"; echo "FAIL: ivsock.ko build"; exit 1; }
make -s -C "$top" O="$O" guest-static "$O/tests/tools/agent-nethub" \
	"$O/tests/tools/ivsock-stream" "$O/guestdrv/agent/ivsock-agent" \
	>"$VM_DIR/build.log" 2>&1 || { cat "$VM_DIR/build.log"; echo "FAIL: build"; exit 1; }

cat >"$VM_DIR/guest.sh" <<'GUEST'
# Guest half of test-guest-agents.sh (installed as /test.sh).
fail=0
R=$IVSOCK_ROLE
say() { echo "== [$R] $*"; }
ok() { echo "ok [$R] $*"; }
bad() { echo "FAIL [$R] $*"; fail=1; }
T="timeout -s KILL"
SEND_OPTS=""
# woken OUTFILE: how many sleeps a doorbell ended (first STATS line).
woken() { sed -n 's/^STATS .*woken=\([0-9]*\).*/\1/p' "$1" | head -n 1; }

# send HOST PORT BYTES OUT: retry while there is no listener yet (exit 2).
send_retry() {
	local i=0 r
	while :; do
		$T 120 /ivsock-stream $SEND_OPTS send "$1" "$2" "$3" >"$4" 2>&1
		r=$?
		[ $r -eq 2 ] && [ $i -lt 300 ] || return $r
		i=$((i + 1))
		sleep 0.2
	done
}

say "insmod ivsock.ko"
insmod /ivsock.ko || { bad "insmod"; exit 1; }
i=0
while [ ! -c /dev/ivsock0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
/ivsock-agent -f -v --backend pci --hostname "guest-$R" >/tmp/agent.log 2>&1 &
apid=$!
i=0
until /ivsock-agent --status 2>/dev/null | grep -q '"registered": true'; do
	i=$((i + 1))
	[ $i -lt 300 ] || { bad "agent never registered"; break; }
	sleep 0.2
done
say "IVSOCK-AGENT-READY"
/ivsock-agent --status | grep -E '"(backend|peer_id|vm_index|vectors|registered)"'

case $R in
b)
	# 7001: ga's 16 MiB, then ga's killed sender; 7002: the host peer.
	# No spinning on 7001: every empty or full ring sleeps on the doorbell.
	$T 150 /ivsock-stream --spin 0 --count 2 listen 7001 >/tmp/r1.out 2>&1 &
	p1=$!
	$T 150 /ivsock-stream listen 7002 >/tmp/r2.out 2>&1 &
	p2=$!
	send_retry "$IVSOCK_HOSTIP" 7004 $((4 << 20)) /tmp/s4.out &&
		ok "4 MiB to the host peer: $(cat /tmp/s4.out)" ||
		bad "send to the host peer: $(cat /tmp/s4.out)"
	wait $p2 && grep -q '^OK bytes=8388608 ' /tmp/r2.out &&
		ok "from the host peer: $(grep '^OK' /tmp/r2.out)" ||
		bad "from the host peer: $(cat /tmp/r2.out)"
	wait $p1
	r1=$?
	grep -q '^OK bytes=16777216 ' /tmp/r1.out &&
		ok "from ga: $(grep '^OK' /tmp/r1.out)" || bad "from ga: $(cat /tmp/r1.out)"
	w=$(woken /tmp/r1.out)
	[ "${w:-0}" -gt 0 ] && ok "receiver woken by ga's doorbell $w times: $(grep -m1 STATS /tmp/r1.out)" ||
		bad "receiver never woken by a doorbell: $(cat /tmp/r1.out)"
	[ $r1 -eq 3 ] && grep -q '^RESET after' /tmp/r1.out &&
		ok "killed sender seen as: $(grep '^RESET' /tmp/r1.out)" ||
		bad "killed sender: rc $r1: $(cat /tmp/r1.out)"
	;;
a)
	SEND_OPTS="--spin 0"
	send_retry "$IVSOCK_PEERIP" 7001 $((16 << 20)) /tmp/s1.out &&
		ok "16 MiB to gb: $(grep SENT /tmp/s1.out)" || bad "16 MiB to gb: $(cat /tmp/s1.out)"
	SEND_OPTS=""
	w=$(woken /tmp/s1.out)
	# The sender sleeps only when it finds the ring full, which depends on
	# how fast gb drains it; whenever it slept, gb's doorbell (not the
	# timeout) must have woken it.
	t=$(sed -n 's/^STATS .*timeouts=\([0-9]*\).*/\1/p' /tmp/s1.out)
	if [ "${w:-0}" -gt 0 ]; then
		ok "sender woken by gb's doorbell $w times: $(grep STATS /tmp/s1.out)"
	elif [ "${t:-1}" -eq 0 ]; then
		ok "sender never had to wait for space: $(grep STATS /tmp/s1.out)"
	else
		bad "sender woken by its timeout, not a doorbell: $(cat /tmp/s1.out)"
	fi
	/ivsock-stream send "$IVSOCK_PEERIP" 7001 $((1 << 40)) >/tmp/s3.out 2>&1 &
	spid=$!
	i=0
	until /ivsock-agent --status | grep -q '"state": "connected"'; do
		i=$((i + 1))
		[ $i -lt 300 ] || { bad "kill test: no connected channel"; break; }
		sleep 0.1
	done
	sleep 1
	kill -9 $spid
	i=0
	until grep -q 'released 1 channels' /tmp/agent.log; do
		i=$((i + 1))
		[ $i -lt 100 ] || { bad "agent did not release the killed client's channel"; break; }
		sleep 0.1
	done
	/ivsock-agent --status | grep -A 2 '"ring_pool"' | grep -q '"used": 0' &&
		ok "killed client's channel reclaimed, rings back to 0" ||
		bad "rings still in use: $(/ivsock-agent --status)"
	;;
esac

if [ "$R" = b ]; then
	# The device goes away under the agent (driver unbind, as on an
	# unplug): it must notice (POLLHUP on /dev/ivsock0) and exit 1 without
	# touching the region again.
	bdf=$(basename "$(readlink /sys/class/misc/ivsock0/device)")
	say "unbind $bdf from ivsock"
	echo "$bdf" >/sys/bus/pci/drivers/ivsock/unbind
	i=0
	while kill -0 $apid 2>/dev/null && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
	kill -9 $apid 2>/dev/null
	wait $apid
	arc=$?
	[ $arc -eq 1 ] && grep -q 'device is gone' /tmp/agent.log &&
		ok "agent exited (rc 1) when the device went away" ||
		bad "agent after unbind: rc $arc"
fi
say "agent log:"
sed "s/^/[$R agent] /" /tmp/agent.log | grep -v 'ring (' | tail -n 25
if [ "$R" = a ]; then
	kill $apid
	wait $apid || bad "agent exit status $? on SIGTERM"
fi
say "rmmod"
rmmod ivsock || bad "rmmod"
[ ! -e /sys/module/ivsock ] || bad "module still loaded"
if dmesg | grep -E 'WARNING|BUG|Oops|Call Trace'; then
	bad "kernel complained"
fi
say "fail=$fail"
exit $fail
GUEST

VM_MODULES="virtio_pci virtio_net" "$here/mkinitramfs.sh" "$VM_DIR/initrd.gz" \
	"$top/guestdrv/kmod/ivsock.ko:/ivsock.ko" \
	"$O/guest-static/ivsock-agent:/ivsock-agent" \
	"$O/guest-static/ivsock-stream:/ivsock-stream" \
	"$VM_DIR/guest.sh:/test.sh"
echo "test-guest-agents: built module, tools, initramfs in $((SECONDS - t_start)) s"

# ---- host: ivsockd, hub + tap in the host peer's namespace, host agent ----
ip netns add "$HNS"
ip -n "$HNS" link set lo up
vm_bg ivsockd "$IVSOCKD" --foreground --domain "lab=$VM_DIR/lab.sock,size=32M,vectors=4" \
	--control "$VM_DIR/ctl.sock"
vm_wait_unix "$VM_DIR/ctl.sock" 20 || { cat "$VM_DIR/ivsockd.out"; echo "FAIL: ivsockd"; exit 1; }
vm_bg hub ip netns exec "$HNS" "$O/tests/tools/agent-nethub" -l "$VM_DIR/net.sock" -t "$TAP"
vm_wait_unix "$VM_DIR/net.sock" 20 || { cat "$VM_DIR/hub.out"; echo "FAIL: hub"; exit 1; }
ip -n "$HNS" addr add 10.77.0.3/24 dev "$TAP"
ip -n "$HNS" link set "$TAP" up
vm_bg hostagent ip netns exec "$HNS" "$O/guestdrv/agent/ivsock-agent" -f -v \
	--server "$VM_DIR/lab.sock" --hostname hostpeer

common="ivsock.hostip=10.77.0.3"
t_boot=$SECONDS
vm_start ga "$VM_DIR/ga.log" "$VM_DIR/initrd.gz" --ivshmem "$VM_DIR/lab.sock,4" \
	--net-connect "$VM_DIR/net.sock" \
	--append "ivsock.role=a ivsock.ip=10.77.0.1/24 ivsock.peerip=10.77.0.2 $common"
vm_start gb "$VM_DIR/gb.log" "$VM_DIR/initrd.gz" --ivshmem "$VM_DIR/lab.sock,4" \
	--net-connect "$VM_DIR/net.sock" \
	--append "ivsock.role=b ivsock.ip=10.77.0.2/24 $common"

# The host peer: receives 4 MiB from gb, sends 8 MiB to gb.
hs() { ip netns exec "$HNS" timeout -s KILL 150 "$O/tests/tools/ivsock-stream" "$@"; }
hs listen 7004 >"$VM_DIR/host-recv.out" 2>&1 &
HOST_PIDS="$!"
hrecv=$!

ips() { # NAME
	"$IVSOCKCTL" -s "$VM_DIR/ctl.sock" vm list --json |
		jq -r --arg n "$1" '.vms[] | select(.name == $n and .state == "alive") |
			.addresses | join(",")'
}
registered() { [ "$(ips "$1")" = "$2" ]; }
for pair in ga=10.77.0.1 gb=10.77.0.2 hostpeer=10.77.0.3; do
	if wait_for 120 registered "${pair%%=*}" "${pair#*=}"; then
		echo "ok: ivsockctl vm list: ${pair%%=*} registered ${pair#*=}"
	else
		fail "${pair%%=*} not registered with ${pair#*=}: '$(ips "${pair%%=*}")'"
	fi
done
"$IVSOCKCTL" -s "$VM_DIR/ctl.sock" vm list --json >"$VM_DIR/vm-list.json" || true

# Host -> gb, retrying while gb's listener is not registered yet (exit 2).
i=0
while :; do
	set +e
	hs send 10.77.0.2 7002 $((8 << 20)) >"$VM_DIR/host-send.out" 2>&1
	r=$?
	set -e
	[ $r -eq 2 ] && [ $i -lt 600 ] || break
	i=$((i + 1))
	sleep 0.2
done
[ $r -eq 0 ] && echo "ok: host peer -> gb: $(cat "$VM_DIR/host-send.out")" ||
	fail "host peer -> gb (rc $r): $(cat "$VM_DIR/host-send.out")"
set +e
wait "$hrecv"
r=$?
set -e
[ $r -eq 0 ] && grep -q '^OK bytes=4194304 ' "$VM_DIR/host-recv.out" &&
	echo "ok: gb -> host peer: $(grep '^OK' "$VM_DIR/host-recv.out")" ||
	fail "gb -> host peer (rc $r): $(cat "$VM_DIR/host-recv.out")"

for g in ga gb; do
	vm_wait_marker "$VM_DIR/$g.log" 200 || fail "guest $g: no result marker (timeout)"
done
echo "test-guest-agents: guests finished $((SECONDS - t_boot)) s after boot"

# After the kill in ga: nothing left in the region's channel table, and
# ga's partition is empty (ivsockd's view).
no_channels() {
	[ "$("$IVSOCKCTL" -s "$VM_DIR/ctl.sock" channels --json | jq '.channels | length')" -eq 0 ]
}
wait_for 20 no_channels && echo "ok: ivsockctl channels: none left" ||
	fail "channels left: $("$IVSOCKCTL" -s "$VM_DIR/ctl.sock" channels --json)"

for g in ga gb; do
	grep -a -E '^(ok|FAIL) |^== ' "$VM_DIR/$g.log" | sed "s/^/[$g] /"
	r=$(vm_result "$VM_DIR/$g.log") || true
	[ "$r" = 0 ] || fail "guest $g rc=$r (log $VM_DIR/$g.log)"
	vm_log_clean "$VM_DIR/$g.log" || fail "guest $g: kernel warnings (log $VM_DIR/$g.log)"
done
vm_cleanup
if [ $rc = 0 ]; then
	echo "PASS: test-guest-agents ($((SECONDS - t_start)) s)"
	[ -n "${KEEP:-}" ] || rm -rf "$VM_DIR"
else
	for f in ivsockd.out hostagent.out hub.out; do
		echo "--- $f"; tail -n 30 "$VM_DIR/$f"
	done
	echo "FAIL: test-guest-agents, logs kept in $VM_DIR"
	trap - EXIT
	host_cleanup
fi
exit $rc
