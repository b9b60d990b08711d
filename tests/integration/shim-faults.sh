#!/bin/bash
# SPDX-License-Identifier: MIT
# Faults around accelerated connections: kill -9 of either side mid-stream
# (the other side must see EOF or ECONNRESET, not hang), the agent killed
# mid-stream (no hang; new connections fall back), and 10,000 connect/close
# cycles leaving no channel, fd or ring behind.
#
#   ivshim-PID-a 10.78.0.1 ──veth── 10.78.0.2 ivshim-PID-b      ivsockd + 2 agents
set -eu
cd "$(dirname "$0")/../.."
. preload/tests/shim-env.sh
shim_env_up
export IVSOCK_STATS=1
D=$SHIM_ENV_DIR
stat_of() { grep -o "$2=[0-9]*" "$1" | tail -n 1 | cut -d= -f2; }
fail() { echo "FAIL: $*"; for f in "$D"/*.out "$D"/*.log; do echo "== $f"; tail -n 8 "$f"; done; exit 1; }
pid_of() { # A|B pattern -> pid of that process in our namespace (waits for it)
	local p ns
	ns=$(shim_ns "$1")
	for _ in $(seq 100); do
		for p in $(ip netns pids "$ns"); do
			if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q "^$SHIM_TOOL $2"; then
				echo "$p"; return 0
			fi
		done
		sleep 0.05
	done
	return 1
}
ms() { date +%s%3N; }
channels_empty() {
	for _ in $(seq 50); do
		shim_ctl channels --json | tr -d ' \n' | grep -q '"channels":\[\]' && return 0
		sleep 0.1
	done
	return 1
}

echo "== kill -9 the server mid-stream: the client sees EOF or ECONNRESET"
shim_run B "$SHIM_TOOL" server 7301 1 >"$D/srv1.out" 2>&1 &
sleep 0.3
shim_run A timeout 60 "$SHIM_TOOL" client "$SHIM_B_IP" 7301 $((64 << 30)) 1 >"$D/cli1.out" 2>&1 &
cli=$!
sleep 1
spid=$(pid_of B "server 7301") || fail "no server"
t0=$(ms)
kill -9 "$spid"
rc=0; wait $cli || rc=$?
echo "client exit $rc after $(( $(ms) - t0 )) ms: $(grep shim-stream: "$D/cli1.out" | head -n 1)"
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "client did not notice the dead server (rc $rc)"
grep -Eq "reset|got [0-9]+ of|Broken pipe" "$D/cli1.out" || fail "unexpected client error"

echo "== kill -9 the client mid-stream: the server sees EOF or ECONNRESET"
shim_run B timeout 60 "$SHIM_TOOL" server 7302 1 >"$D/srv2.out" 2>&1 &
srv=$!
sleep 0.3
shim_run A "$SHIM_TOOL" client "$SHIM_B_IP" 7302 $((64 << 30)) 1 >"$D/cli2.out" 2>&1 &
sleep 1
cpid=$(pid_of A "client $SHIM_B_IP 7302") || fail "no client"
t0=$(ms)
kill -9 "$cpid"
rc=0; wait $srv || rc=$?
echo "server exit $rc after $(( $(ms) - t0 )) ms"
[ $rc -ne 124 ] || fail "server hung after its client died"
grep -q accelerated_accept=1 "$D/srv2.out" || fail "server was not accelerated"
channels_empty || fail "channels left after kill -9: $(shim_ctl channels --json)"

echo "== 10,000 connect/close cycles: no leaked channel, fd or ring"
shim_run B "$SHIM_TOOL" server 7303 0 >"$D/srv3.out" 2>&1 &
sleep 0.3
spid=$(pid_of B "server 7303") || fail "no server"
shim_run A timeout 300 "$SHIM_TOOL" cycles "$SHIM_B_IP" 7303 100 2>"$D/cli3a.out" || fail "warm-up cycles"
fds0=$(ls /proc/"$spid"/fd | wc -l)
shim_run A timeout 300 "$SHIM_TOOL" cycles "$SHIM_B_IP" 7303 10000 2>"$D/cli3.out" || fail "cycles"
# each cycle on rings, or on TCP while the pool is momentarily full of
# channels the server has not closed yet (a busy machine)
acc=$(stat_of "$D/cli3.out" accelerated_connect)
nor=$(stat_of "$D/cli3.out" fallback_no_rings)
echo "cycles: $acc on rings, $nor on TCP (pool full)"
[ $((acc + nor)) = 10000 ] && [ "$acc" -gt 5000 ] || fail "cycles not accelerated: $(cat "$D/cli3.out")"
sleep 0.5
fds1=$(ls /proc/"$spid"/fd | wc -l)
echo "server fds before $fds0 after $fds1"
# a few may belong to serving threads still finishing; a leak would be thousands
[ "$fds1" -le $((fds0 + 8)) ] || fail "server leaked fds ($fds0 -> $fds1)"
channels_empty || fail "channels leaked: $(shim_ctl channels --json)"
# Every ring of the partition is free again: the whole quota is usable.
shim_run A timeout 60 "$SHIM_TOOL" multi "$SHIM_B_IP" 7303 65536 15 2>"$D/cli3b.out" || fail "multi after cycles"
[ "$(stat_of "$D/cli3b.out" accelerated_connect)" = 15 ] || fail "rings leaked: $(cat "$D/cli3b.out")"
kill "$spid"

echo "== the agent of the server's VM killed mid-stream: no hang"
shim_run B "$SHIM_TOOL" server 7304 0 >"$D/srv4.out" 2>&1 &
sleep 0.3
shim_run A timeout 60 "$SHIM_TOOL" client "$SHIM_B_IP" 7304 $((1 << 30)) 1 >"$D/cli4.out" 2>&1 &
cli=$!
sleep 0.5
kill -9 "$SHIM_AGENT_PID_B"
rc=0; wait $cli || rc=$?
echo "client exit $rc: $(grep shim-stream: "$D/cli4.out" | head -n 1)"
[ $rc -ne 124 ] || fail "client hung after the agent died"
[ $rc -eq 0 ] || grep -Eq "reset|got [0-9]+ of|Broken pipe" "$D/cli4.out" || fail "unexpected error"
echo "== new connections without the agent fall back and work"
shim_run A timeout 60 "$SHIM_TOOL" client "$SHIM_B_IP" 7304 $((4 << 20)) 1 2>"$D/cli5.out" || fail "after agent death"
[ "$(stat_of "$D/cli5.out" ring_tx_bytes)" = 0 ] || fail "rings used towards a VM without agent"
kill "$(pid_of B "server 7304")" 2>/dev/null || true
echo PASS
