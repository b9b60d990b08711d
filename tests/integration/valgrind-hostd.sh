#!/bin/bash
# SPDX-License-Identifier: MIT
# ivsockd through a short lifecycle under valgrind memcheck:
#
#   fake clients (tests/tools/ivshmem-fake-client)
#     W: registers, stays          R: register+ping, exits     20 x connect/close
#     C: opens a channel, exits    G: garbage sender            V: vanisher
#        \                 |                 /
#         valgrind ivsockd --config CONF: [domain a] A.sock (16M memfd, grace 1s)
#                                   ^ ivsockctl: domain/vm list, vm show, channels
#   SIGHUP adding [domain b] (a client joins it), SIGHUP with a broken
#   file (refused, running configuration kept), then SIGTERM.
#
# Fails on any memcheck error, a definite leak, or a daemon that does not
# exit 0 on SIGTERM. Valgrind makes the daemon ~20x slower: timeouts are
# generous and nothing here measures time.
set -eu
cd "$(dirname "$0")/../.."
O=${O:-build}
D=$O/hostd/ivsockd
C=$O/hostd/ivsockctl
F=$O/tests/tools/ivshmem-fake-client
command -v valgrind >/dev/null || { echo "SKIP: valgrind missing"; exit 77; }
for b in "$D" "$C" "$F"; do
	[ -x "$b" ] || { echo "SKIP: $b not built (make first)"; exit 77; }
done

T=$(mktemp -d /tmp/valgrind-hostd.XXXXXX)
VPID=""
pids=()
cleanup() {
	for p in "${pids[@]}" $VPID; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$T"
}
trap cleanup EXIT
fail() {
	echo "FAIL: $*"
	echo "--- daemon log"; tail -n 30 "$T/daemon.log" || true
	echo "--- valgrind log"; tail -n 60 "$T/vg.log" || true
	exit 1
}
wait_for() { # FILE PATTERN [secs]
	local i
	for i in $(seq 1 $((${3:-60} * 10))); do
		grep -q -- "$2" "$1" 2>/dev/null && return 0
		[ -z "$VPID" ] || kill -0 "$VPID" 2>/dev/null || fail "ivsockd exited"
		sleep 0.1
	done
	fail "timeout waiting for '$2' in $1"
}
ctl() { "$C" -s "$T/ctl.sock" "$@"; }

conf_a() {
	cat <<CONF
[daemon]
control = $T/ctl.sock
log_level = debug

[domain a]
socket = $T/a.sock
region_size = 16M
vectors = 2
grace_period = 1s
# The 20 connect/close cycles can all be accepted before the slowed-down
# daemon sees the first disconnect: room for all of them.
max_vms = 32
ring_size = 16K
CONF
}

echo "== start ivsockd under valgrind"
conf_a >"$T/ivsockd.conf"
valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
	--show-leak-kinds=definite,indirect,possible --track-fds=no --log-file="$T/vg.log" \
	"$D" --foreground --config "$T/ivsockd.conf" 2>"$T/daemon.log" &
VPID=$!
wait_for "$T/daemon.log" "ready:" 120

echo "== clients come and go"
"$F" -v 2 -r stay,10.1.0.1 -s 600 "$T/a.sock" >"$T/w.out" &
pids+=($!)
wait_for "$T/w.out" "register status=0"
"$F" -v 2 -r brief,10.1.0.2,fd00::2 -p "$T/a.sock" >"$T/r.out"
grep -q "ping status=0" "$T/r.out" || fail "register/ping: $(cat "$T/r.out")"
"$F" -v 2 -r thief,10.1.0.1 "$T/a.sock" >"$T/c.out" || true
grep -q "register status=-98" "$T/c.out" || fail "address conflict not refused"
"$F" -v 2 -q -c 20 "$T/a.sock" >/dev/null || fail "connect/close cycles"
"$F" -v 2 -C 4096 "$T/a.sock" >/dev/null 2>&1 || true
"$F" -v 2 -g 5000 "$T/a.sock" >/dev/null 2>&1 || true
"$F" -V "$T/a.sock" >/dev/null 2>&1 || true

echo "== control socket"
ctl domain list >/dev/null || fail "domain list"
ctl vm list --json >/dev/null || fail "vm list"
ctl vm show stay >/dev/null || fail "vm show"
ctl vm show nobody >/dev/null 2>&1 && fail "vm show of an unknown VM succeeded"
ctl channels >/dev/null || fail "channels"
# a malformed request: the daemon drops the connection, nothing else
printf 'not a request at all, just bytes' | timeout 20 socat - UNIX-CONNECT:"$T/ctl.sock" \
	>/dev/null 2>&1 || true

# Dead VMs' partitions are reclaimed after the 1 s grace period.
sleep 2
"$F" -v 2 -r late -p "$T/a.sock" >"$T/l.out"
grep -q "ping status=0" "$T/l.out" || fail "daemon stopped answering"

echo "== SIGHUP: a domain added, then a broken file refused"
{ conf_a; printf '\n[domain b]\nsocket = %s\nregion_size = 16M\nvectors = 1\n' "$T/b.sock"; } \
	>"$T/ivsockd.conf"
kill -HUP $VPID
wait_for "$T/daemon.log" "domain b added"
"$F" -v 1 -r bee,10.2.0.1 -p "$T/b.sock" >"$T/b.out"
grep -q "ping status=0" "$T/b.out" || fail "new domain does not answer"
printf '[domain c]\nregion_size = banana\n' >>"$T/ivsockd.conf"
kill -HUP $VPID
wait_for "$T/daemon.log" "keeping the running configuration"
ctl domain list >/dev/null || fail "domain list after reloads"

echo "== SIGTERM"
kill "${pids[@]}" 2>/dev/null || true
wait "${pids[@]}" 2>/dev/null || true
pids=()
kill -TERM $VPID
rc=0
wait $VPID || rc=$?
VPID=""
grep -q "ERROR SUMMARY: 0 errors" "$T/vg.log" || fail "memcheck reported errors"
[ $rc -eq 0 ] || fail "ivsockd exited $rc under valgrind"
grep -E "definitely lost|indirectly lost|possibly lost|still reachable" "$T/vg.log" || true
echo "PASS: ivsockd clean under valgrind"
