#!/bin/bash
# SPDX-License-Identifier: MIT
# ivsockd robustness with fake ivshmem clients (no VMs, no namespaces):
#
#   fake clients (C, tests/tools/ivshmem-fake-client)
#     W  well-behaved, registers "good", reads announcements throughout
#     500 x connect/greet/close      garbage sender      holders (never read)
#     vanishers (close mid-greeting)  allow-list violator
#        \            |            /
#         ivsockd --domain a=A.sock (memfd)  --domain b=B.sock (memfd)
#                 --control CTL.sock   <- ivsockctl
#
# Checks: greeting/vectors/announcements; no leaked fd (/proc/PID/fd), peer
# ID or directory slot after the storm; W undisturbed and told about every
# peer; mailbox REGISTER/PING, address conflicts, allow lists; ivsockctl exit
# codes; region sizes must be powers of two; a second daemon on a backing
# file in use is refused; a restarted daemon adopts (does not re-format) the
# /dev/shm region; SIGHUP adds domains and refuses re-format changes.
set -eu
cd "$(dirname "$0")/../.."
O=${O:-build}
D=$O/hostd/ivsockd
C=$O/hostd/ivsockctl
F=$O/tests/tools/ivshmem-fake-client
for b in "$D" "$C" "$F"; do
	[ -x "$b" ] || { echo "SKIP: $b not built (make first)"; exit 77; }
done
command -v jq >/dev/null || { echo "SKIP: jq missing"; exit 77; }

T=$(mktemp -d /tmp/hostd-test.XXXXXX)
SHM=/dev/shm/ivsock-hostd-test-$$
DPID=""
pids=()
cleanup() {
	for p in "${pids[@]}" $DPID; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$T" "$SHM"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; echo "--- daemon log"; tail -n 40 "$T"/daemon*.log; exit 1; }
ctl() { "$C" -s "$T/ctl.sock" "$@"; }
wait_for() { # FILE PATTERN [secs]
	local i
	for i in $(seq 1 $((${3:-10} * 10))); do
		grep -q -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	fail "timeout waiting for '$2' in $1"
}
start_daemon() { # LOG ARGS...
	local log=$1; shift
	"$D" --foreground "$@" 2>"$log" &
	DPID=$!
	wait_for "$log" "ready:"
}
fdcount() { ls /proc/"$DPID"/fd | wc -l; }
dom() { ctl domain list --json | jq -r ".domains[] | select(.name==\"$1\") | .$2"; }

echo "== sizes must be powers of two"
if "$D" --foreground --domain x="$T/x.sock",size=3M --control "$T/x.ctl" 2>"$T/err"; then
	fail "3M region accepted"
fi
grep -q "power of two" "$T/err" || fail "no clear message: $(cat "$T/err")"

echo "== start"
start_daemon "$T/daemon.log" --domain a="$T/a.sock",size=16M,vectors=4 \
	--domain b="$T/b.sock",size=16M,vectors=2 \
	--domain g="$T/g.sock",size=4M,vectors=1,max_vms=4,allow=vmA+vmB \
	--control "$T/ctl.sock" --log-level debug

"$F" -v 4 -r good,10.1.0.1 -s 600 "$T/a.sock" >"$T/w.out" &
W=$!; pids+=($W)
wait_for "$T/w.out" "register status=0"
WPEER=$(sed -n 's/^own_id=\([0-9]*\).*/\1/p' "$T/w.out")
[ "$(dom a daemon_peer_id)" = 0 ] || fail "daemon peer id is not 0"
grep -q "daemon=0 peers=0," "$T/w.out" || fail "daemon not announced first: $(head -1 "$T/w.out")"
before=$(fdcount)
echo "daemon fds before: $before"

echo "== mailbox: conflicts, ping, names"
"$F" -v 4 -r other,10.1.0.1 "$T/a.sock" >"$T/c.out"
grep -q "register status=-98" "$T/c.out" || fail "address conflict not refused: $(cat "$T/c.out")"
"$F" -v 4 -r good,10.1.0.2,fd00::2 -p "$T/a.sock" >"$T/d.out"
grep -q "register status=0" "$T/d.out" || fail "second register failed"
grep -q "ping status=0" "$T/d.out" || fail "ping failed"
"$F" -v 1 -r intruder "$T/g.sock" >"$T/g.out" || true
grep -q "register status=-13" "$T/g.out" || fail "allow list not enforced: $(cat "$T/g.out")"
"$F" -v 1 -r vmA -p "$T/g.sock" >"$T/g2.out"
grep -q "ping status=0" "$T/g2.out" || fail "allowed VM refused"

echo "== 500 connect/disconnect cycles"
"$F" -v 4 -q -c 500 "$T/a.sock" >/dev/null || fail "cycles"

echo "== malformed clients"
for i in 1 2 3; do "$F" -H 600 "$T/a.sock" >/dev/null & pids+=($!); done
"$F" -v 4 -g 200000 "$T/a.sock" >/dev/null || true
for i in $(seq 1 20); do "$F" -V "$T/a.sock" || true; done
"$F" -v 4 -q -c 1500 "$T/a.sock" >/dev/null || fail "cycles with holders present"
grep -q "gone (not reading its socket: queue full)" "$T/daemon.log" || fail "holders not dropped"
grep -q "gone (sends data on a one-way protocol)" "$T/daemon.log" || fail "garbage sender not dropped"
for p in "${pids[@]}"; do [ "$p" = "$W" ] || kill "$p" 2>/dev/null || true; done

echo "== after the storm"
"$F" -v 4 -r late,10.1.0.3 -p "$T/a.sock" >"$T/e.out"
grep -q "ping status=0" "$T/e.out" || fail "daemon does not answer after the storm"
kill -0 $W || fail "well-behaved client died"
sleep 0.5
after=$(fdcount)
echo "daemon fds after: $after"
[ "$after" -eq "$before" ] || { ls -l /proc/$DPID/fd; fail "fd leak: $before -> $after"; }
[ "$(dom a peer_ids_in_use)" = 2 ] || fail "peer ids in use: $(dom a peer_ids_in_use), want 2"
[ "$(dom a vms_alive)" = 1 ] || fail "vms alive: $(dom a vms_alive)"
[ "$(dom a vms_dead)" = 0 ] || fail "dead entries left: $(dom a vms_dead)"
[ "$(ctl vm list --json | jq '[.vms[] | select(.domain=="a")] | length')" = 1 ] ||
	fail "directory slots leaked: $(ctl vm list)"
ctl vm list --json | jq -e ".vms[] | select(.name==\"good\" and .peer_id==$WPEER and .state==\"alive\")" >/dev/null ||
	fail "W not listed alive: $(ctl vm list)"
for i in $(seq 1 50); do
	conn=$(grep -c '^connect' "$T/w.out"); disc=$(grep -c '^disconnect' "$T/w.out")
	[ "$conn" -eq "$disc" ] && break
	sleep 0.1
done
echo "W saw $conn connects, $disc disconnects"
[ "$conn" -ge 2000 ] && [ "$conn" -eq "$disc" ] || { comm -3 <(grep "^connect" "$T/w.out" | cut -d" " -f2 | sort) <(grep "^disconnect" "$T/w.out" | cut -d" " -f2 | sort); fail "announcements unbalanced: $conn/$disc"; }

echo "== channels: counters, reclaim of a dead connector's channel"
"$F" -v 4 -r chanvm,10.1.0.9 -C 4321 -s 600 "$T/a.sock" >"$T/ch.out" &
CH=$!; pids+=($CH)
wait_for "$T/ch.out" "^channel "
ctl channels --json | jq -e '.channels[] | select(.state=="offered" and
	.ends[0].vm=="chanvm" and .ends[0].tx_bytes==4321 and .ends[0].state=="open" and
	.tuple.src=="10.0.0.1" and .tuple.dport==80)' >/dev/null ||
	fail "channel not listed: $(ctl channels --json)"
ctl channels | grep -q "chanvm/p[0-9]*/v0" || fail "channels table: $(ctl channels)"
kill $CH; wait $CH 2>/dev/null || true
for i in $(seq 1 30); do [ "$(ctl channels --json | jq '.channels | length')" = 0 ] && break; sleep 0.1; done
[ "$(ctl channels --json | jq '.channels | length')" = 0 ] || fail "channel of a dead VM left: $(ctl channels)"
grep -q "vm [0-9]* reclaimed (0 channels revoked, 0 listeners, 0 offers, 1 blocks freed)" "$T/daemon.log" ||
	grep -q "peer .* gone .*1 channel end reset" "$T/daemon.log" || fail "channel end not reset at disconnect"

echo "== ivsockctl errors"
rc=0; ctl vm show nosuchvm 2>"$T/err" || rc=$?
[ $rc = 1 ] && grep -q "no VM named" "$T/err" || fail "vm show unknown: rc=$rc"
rc=0; ctl frobnicate 2>/dev/null || rc=$?; [ $rc = 2 ] || fail "unknown command rc=$rc"
rc=0; ctl vm show 2>/dev/null || rc=$?; [ $rc = 2 ] || fail "missing argument rc=$rc"
rc=0; "$C" -s "$T/none.sock" vm list 2>/dev/null || rc=$?; [ $rc = 1 ] || fail "no daemon rc=$rc"
ctl vm list | head -1 | grep -q "^NAME  *UUID  *PEER  *STATE  *ADDRESSES  *VECTORS  *DOMAIN" ||
	fail "table header"
ctl channels >/dev/null
ctl domain list >/dev/null

echo "== file backings are refused (they cannot be sealed)"
if "$D" --foreground --domain b2="$T/b2.sock",size=16M,backing="$SHM" --control "$T/c2.sock" 2>"$T/err"; then
	fail "a /dev/shm backing was accepted"
fi
grep -q "only backing=memfd or backing=hugetlb" "$T/err" || fail "no clear message: $(cat "$T/err")"
[ ! -e "$SHM" ] || fail "the refused backing file was created"
kill -TERM $DPID; wait $DPID || fail "daemon exit status on SIGTERM"
[ ! -e "$T/a.sock" ] || fail "socket not unlinked"

echo "== SIGHUP reload"
cat >"$T/conf" <<CONF
[daemon]
control = $T/ctl.sock
log_level = info
[domain c]
socket = $T/c.sock
region_size = 16M
vectors = 2
CONF
start_daemon "$T/daemon3.log" --config "$T/conf"
sed -i 's/region_size = 16M/region_size = 8M/' "$T/conf"
printf '[domain d]\nsocket = %s/d.sock\nregion_size = 4M\nmax_vms = 4\nallow = x y\n' "$T" >>"$T/conf"
kill -HUP $DPID
wait_for "$T/daemon3.log" "configuration reloaded"
grep -q "domain c: changing region_size needs a new region" "$T/daemon3.log" || fail "re-format change not refused"
[ "$(dom c region_size)" = 16777216 ] || fail "region_size changed live"
[ "$(dom d allow | jq -c .)" = '["x","y"]' ] || fail "domain d not added"
"$F" -v 4 -r - "$T/d.sock" >"$T/h.out" || true
grep -q "register status=-13" "$T/h.out" || fail "unnamed client in allow-listed domain"
echo "PASS"
