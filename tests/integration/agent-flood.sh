#!/bin/bash
# SPDX-License-Identifier: MIT
# ivsock-agent against connection floods and fd exhaustion, and who sees
# whom in STATUS. The agent runs with 128 fds (prlimit) and --allow-group 65534
# --max-clients-per-uid 10; "busy" below means its CPU time (utime+stime in
# /proc/PID/stat) grows by more than 1 s over 2 s of idle holding (a spin
# burns 2 s), and every STATUS is bounded by `timeout`.
#   1. uid 65533 (not admitted: --allow-group restricts the default, which
#      admits every user) opens 2000 connections and holds them:
#      each is closed at accept; the agent keeps few fds, is not busy,
#      answers root's STATUS;
#   2. uid 65534 (admitted by --allow-group) holds 50: only 10 are kept;
#   3. root holds 200 (root is not capped) and exhausts the agent's fds:
#      new connections are closed at once with a reason (reserve fd), the
#      agent is not busy, and serves again once root lets go;
#   4. the whole run logs a bounded number of lines (rate limiting);
#   5. STATUS asked by uid 65534 lists only uid 65534's clients, root's
#      lists everyone.
#
#   host netns: ivsockd --domain fl=$T/fl.sock
#   netns ivfl-PID: prlimit --nofile=128 ivsock-agent --server $T/fl.sock
#                   python3 flooders (uids 65533, 65534, 0)
set -eu
cd "$(dirname "$0")/../.."
O=${O:-build}
IVSOCKD=$O/hostd/ivsockd
AGENT=$O/guestdrv/agent/ivsock-agent

skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces, setpriv)"
[ -x "$IVSOCKD" ] && [ -x "$AGENT" ] || skip "ivsockd/ivsock-agent not built"
# a python the unprivileged users can run (not one under /root)
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3) || skip "python3 missing"
command -v jq >/dev/null || skip "jq missing"
command -v prlimit >/dev/null || skip "prlimit missing"
NS=ivfl-$$
ip netns add "$NS" 2>/dev/null || skip "cannot create network namespaces"
T=$(mktemp -d /tmp/ivsock-flood.XXXXXX)
chmod 0755 "$T"
PIDS=()
cleanup() {
	local rc=$?
	for p in $(ip netns pids "$NS" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	ip netns del "$NS" 2>/dev/null || true
	if [ $rc -ne 0 ]; then
		for f in "$T"/*.log "$T"/*.out; do [ -f "$f" ] && { echo "--- $f"; tail -n 15 "$f"; }; done
	fi
	rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
wait_for() {
	local end=$((SECONDS + $1)); shift
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.1
	done
}
ip -n "$NS" link set lo up

cat >"$T/flood.py" <<'PY'
import socket, struct, sys, os, time, array
mode, n, hold, ready = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
M = 0x4d535649
socks, ok = [], 0
for i in range(n):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.setblocking(False)
    try:
        s.connect("\0ivsock-agent")
    except BlockingIOError:
        s.close()
        time.sleep(0.01)
        continue
    except OSError:
        s.close()
        continue
    ok += 1
    socks.append(s)
    if mode == "hello":
        s.setblocking(True)
        s.settimeout(5)
        s.send(struct.pack("<IHHIIiI", M, 1, 1, 8, 1, 0, 0) + struct.pack("<II", os.getpid(), 0))
        try:
            msg, anc, flags, addr = s.recvmsg(4096, socket.CMSG_SPACE(8))
            for lvl, typ, data in anc:
                if lvl == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                    for fd in array.array("i", data[: len(data) - len(data) % 4]):
                        os.close(fd)
        except OSError:
            pass
with open(ready, "w") as f:
    f.write("%d\n" % ok)
time.sleep(hold)
PY

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
nfds() { ls "/proc/$1/fd" | wc -l; }
status_root() { timeout 5 ip netns exec "$NS" "$AGENT" --status; }
# flood UID MODE N HOLD: run a flooder in the background, wait until it holds
flood() {
	local uid=$1 mode=$2 n=$3 hold=$4 pre=()
	rm -f "$T/ready"
	[ "$uid" != 0 ] && pre=(setpriv --reuid="$uid" --regid="$uid" --clear-groups)
	ip netns exec "$NS" prlimit --nofile=4096:4096 "${pre[@]}" \
		"$PY" "$T/flood.py" "$mode" "$n" "$hold" "$T/ready" >"$T/flood-$uid.out" 2>&1 &
	FPID=$!
	wait_for 60 test -s "$T/ready" || fail "flooder uid $uid did not finish connecting"
}
# idle_cpu: CPU ticks the agent burns over 2 s
idle_cpu() {
	local a b
	a=$(cpu "$APID"); sleep 2; b=$(cpu "$APID")
	echo $((b - a))
}
HZ=$(getconf CLK_TCK)

chmod 0777 "$T"
"$IVSOCKD" --foreground --domain "fl=$T/fl.sock,size=16M,vectors=2" --control "$T/ctl.sock" \
	>"$T/ivsockd.log" 2>&1 &
PIDS+=($!)
wait_for 10 test -S "$T/fl.sock" || fail "ivsockd did not start"
ip netns exec "$NS" prlimit --nofile=128:128 "$AGENT" -f --server "$T/fl.sock" --hostname fl \
	--allow-group 65534 --max-clients-per-uid 10 >"$T/agent.log" 2>&1 &
APID=$!
PIDS+=("$APID")
wait_for 10 status_root || fail "agent did not start"

echo "== 1. 2000 connections from uid 65533 (refused)"
flood 65533 plain 2000 6
d=$(idle_cpu)
f=$(nfds "$APID")
st=$(status_root) || fail "agent does not answer root during the flood"
echo "agent: cpu +$d ticks/2 s (HZ $HZ), $f fds, refused $(echo "$st" | jq .admission.refused)"
[ "$d" -lt "$HZ" ] || fail "agent busy during the refused flood ($d ticks in 2 s)"
[ "$f" -lt 64 ] || fail "agent holds $f fds for refused clients"
[ "$(echo "$st" | jq .admission.refused)" -ge 1000 ] || fail "refusals not counted"
kill "$FPID" 2>/dev/null || true; wait "$FPID" 2>/dev/null || true

echo "== 2. 50 connections from uid 65534 (admitted by --allow-group, capped at 10)"
flood 65534 plain 50 30
st=$(status_root) || fail "no status"
c=$(echo "$st" | jq .admission.connections)
echo "agent keeps $c connections, capped $(echo "$st" | jq .admission.capped)"
[ "$c" -le 12 ] || fail "per-uid cap not applied ($c connections)"
[ "$(echo "$st" | jq .admission.capped)" -ge 40 ] || fail "capped connections not counted"
kill "$FPID" 2>/dev/null || true; wait "$FPID" 2>/dev/null || true

echo "== 3. root holds 200: the agent runs out of fds"
flood 0 plain 200 30
HOLDER=$FPID
d=$(idle_cpu)
echo "agent at its fd limit: cpu +$d ticks/2 s"
[ "$d" -lt "$HZ" ] || fail "agent busy at EMFILE ($d ticks in 2 s)"
set +e
timeout 10 ip netns exec "$NS" "$AGENT" --status >"$T/emfile-status.out" 2>&1
r=$?
set -e
[ $r -ne 124 ] || fail "a client hung on the exhausted agent"
echo "STATUS at EMFILE: rc $r ($(head -c 120 "$T/emfile-status.out" | tr '\n' ' '))"
kill "$HOLDER" 2>/dev/null || true; wait "$HOLDER" 2>/dev/null || true
wait_for 10 status_root || fail "agent did not recover after the fds were released"
st=$(status_root)
echo "recovered; shed $(echo "$st" | jq .admission.shed)"

echo "== 4. log lines"
lines=$(wc -l <"$T/agent.log")
echo "agent log: $lines lines for ~2300 refused connections"
[ "$lines" -lt 200 ] || fail "agent logged $lines lines"

echo "== 5. STATUS: non-root sees only its own clients"
flood 0 hello 1 30
R=$FPID
flood 65534 hello 1 30
N=$FPID
all=$(status_root | jq -c '[.clients[].uid] | sort | unique')
mine=$(timeout 5 ip netns exec "$NS" setpriv --reuid=65534 --regid=65534 --clear-groups \
	"$AGENT" --status | jq -c '[.clients[].uid] | sort | unique') || fail "no status for uid 65534"
echo "root sees uids $all, uid 65534 sees $mine"
[ "$all" = "[0,65534]" ] || fail "root does not see every client: $all"
[ "$mine" = "[65534]" ] || fail "uid 65534 sees other users' clients: $mine"
kill "$R" "$N" 2>/dev/null || true
echo PASS
