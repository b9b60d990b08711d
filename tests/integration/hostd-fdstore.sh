#!/bin/bash
# SPDX-License-Identifier: MIT
# ivsockd restart through the systemd file descriptor store, and a region
# nobody can resize. No VMs: fake ivshmem clients; PID 1 need not be systemd
# (tests/tools/fdstore-harness.py plays the service manager).
#
#   fdstore-harness.py (NOTIFY_SOCKET, FDSTORE=1, LISTEN_FDS on restart)
#        |
#   ivsockd --domain a=A.sock (sealed memfd)  <- ivsockctl
#      |          |            |           |
#      W          X          CH (channel)  T (ftruncate the region fd)
#
# Checks: the region fd is sealed (ftruncate shrink/grow fail with EPERM,
# the daemon and every client carry on); after a crash (SIGKILL) and after a
# clean restart (SIGTERM) the new ivsockd adopts the same region (format_id
# kept, epoch moves), resumes W, X and the channel's owner with their peer
# IDs (no disconnect announced, their mailboxes answered through the kept
# doorbells), and serves new clients alongside them; a client that leaves
# after the restart is announced and its descriptors leave the store.
set -eu
cd "$(dirname "$0")/../.."
O=${O:-build}
D=$PWD/$O/hostd/ivsockd
C=$PWD/$O/hostd/ivsockctl
F=$PWD/$O/tests/tools/ivshmem-fake-client
H=$PWD/tests/tools/fdstore-harness.py
for b in "$D" "$C" "$F"; do
	[ -x "$b" ] || { echo "SKIP: $b not built (make first)"; exit 77; }
done
command -v jq >/dev/null || { echo "SKIP: jq missing"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: python3 missing"; exit 77; }

T=$(mktemp -d /tmp/hostd-fdstore.XXXXXX)
HPID=""
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	[ -z "$HPID" ] || kill -TERM "$HPID" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; echo "--- harness"; tail -n 30 "$T/h.out"; echo "--- daemon log"; tail -n 40 "$T/daemon.log"; exit 1; }
ctl() { "$C" -s "$T/ctl.sock" "$@"; }
wait_for() { # FILE PATTERN [secs] [count]
	local i
	for i in $(seq 1 $((${3:-10} * 10))); do
		[ "$(grep -c -- "$2" "$1" 2>/dev/null)" -ge "${4:-1}" ] && return 0
		sleep 0.1
	done
	fail "timeout waiting for '$2' (x${4:-1}) in $1"
}
dom() { ctl domain list --json | jq -r ".domains[] | select(.name==\"a\") | .$1"; }
peer_of() { sed -n 's/^own_id=\([0-9]*\).*/\1/p' "$1"; }

echo "== start under the fd-store harness"
python3 "$H" "$T" -- "$D" --foreground --log-level debug \
	--domain a="$T/a.sock",size=16M,vectors=2 --control "$T/ctl.sock" \
	>"$T/h.out" 2>"$T/daemon.log" &
HPID=$!
wait_for "$T/h.out" "^ready"
grep -q "^store a.region=1" "$T/h.out" || fail "region not stored"
grep -q "^store a.listen=1" "$T/h.out" || fail "listener not stored"

"$F" -v 2 -r w,10.3.0.1 -s 600 "$T/a.sock" >"$T/w.out" &
W=$!; pids+=($W)
wait_for "$T/w.out" "register status=0"
"$F" -v 2 -r x,10.3.0.2 -s 600 "$T/a.sock" >"$T/x.out" &
X=$!; pids+=($X)
wait_for "$T/x.out" "register status=0"
"$F" -v 2 -r ch,10.3.0.3 -C 4321 -s 600 "$T/a.sock" >"$T/ch.out" &
CH=$!; pids+=($CH)
wait_for "$T/ch.out" "^channel "
PW=$(peer_of "$T/w.out"); PX=$(peer_of "$T/x.out"); PCH=$(peer_of "$T/ch.out")
wait_for "$T/h.out" "^store a.c$PCH.d1=1"
fid=$(dom format_id)
echo "format_id $fid; W=$PW X=$PX CH=$PCH"

echo "== the region cannot be resized"
"$F" -v 2 -r trunc,10.3.0.9 -T "$T/a.sock" >"$T/t.out" || fail "truncating client failed: $(cat "$T/t.out")"
grep -q "truncate rc=-1 errno=Operation not permitted" "$T/t.out" || fail "shrink not refused: $(cat "$T/t.out")"
grep -q "grow rc=-1 errno=Operation not permitted" "$T/t.out" || fail "grow not refused: $(cat "$T/t.out")"
kill -USR1 $W
wait_for "$T/w.out" "ping status=0"
[ "$(dom region_size)" = 16777216 ] || fail "region size changed"

check_resumed() { # ROUND
	local r=$1
	wait_for "$T/h.out" "^ready" 10 $((r + 1))
	[ "$(dom format_id)" = "$fid" ] || fail "round $r: region re-formatted"
	[ "$(dom adopted)" = true ] || fail "round $r: not adopted"
	[ "$(dom epoch)" = $((r + 1)) ] || fail "round $r: epoch $(dom epoch)"
	for p in $PW $PX $PCH; do
		ctl vm list --json | jq -e ".vms[] | select(.peer_id==$p and .state==\"alive\" and .daemon_state==\"alive\")" >/dev/null ||
			fail "round $r: peer $p not resumed: $(ctl vm list)"
	done
	[ "$(dom vms_orphan)" = 0 ] || fail "round $r: orphans $(dom vms_orphan)"
	ctl channels --json | jq -e '.channels[] | select(.ends[0].vm=="ch" and .ends[0].tx_bytes==4321)' >/dev/null ||
		fail "round $r: channel lost: $(ctl channels)"
	kill -USR1 $W; kill -USR1 $X
	wait_for "$T/w.out" "ping status=0" 10 $((r + 1))
	wait_for "$T/x.out" "ping status=0" 10 $r
	for f in w x ch; do
		! grep -E -q "^disconnect ($PW|$PX|$PCH)\$" "$T/$f.out" ||
			fail "round $r: $f was told a resumed client left"
	done
	kill -0 $W && kill -0 $X && kill -0 $CH || fail "round $r: a client died"
	# A new client meets the resumed ones, and they meet it.
	"$F" -v 2 -r new$r,10.3.1.$r -p "$T/a.sock" >"$T/n$r.out" || fail "round $r: new client"
	grep -q "ping status=0" "$T/n$r.out" || fail "round $r: new client not served"
	grep -q "peers=.*$PW," "$T/n$r.out" || fail "round $r: new client not told of W"
	wait_for "$T/w.out" "^connect $(peer_of "$T/n$r.out")\$"
}

echo "== crash (SIGKILL) and restart"
kill -USR2 $HPID
check_resumed 1
grep -q "3 clients resumed" "$T/daemon.log" || fail "resume not logged"

echo "== clean restart (SIGTERM)"
kill -USR1 $HPID
check_resumed 2
grep -q "^exited rc=0" "$T/h.out" || fail "ivsockd did not exit 0 on SIGTERM (sanitizer report?)"

echo "== a client leaving after the restarts"
kill $X; wait $X 2>/dev/null || true
wait_for "$T/w.out" "^disconnect $PX\$"
wait_for "$T/h.out" "^remove a.c$PX.e[0-9]*.[0-9]*.sock"
for i in $(seq 1 30); do
	ctl vm list --json | jq -e ".vms[] | select(.peer_id==$PX and .state==\"alive\")" >/dev/null || break
	sleep 0.1
done
ctl vm list --json | jq -e ".vms[] | select(.peer_id==$PX and .state==\"alive\")" >/dev/null &&
	fail "X still alive"
kill -TERM $HPID; wait $HPID || true
HPID=""
[ "$(grep -c "^exited rc=0" "$T/h.out")" = 2 ] || fail "ivsockd did not exit 0 at the end"
echo "PASS"
