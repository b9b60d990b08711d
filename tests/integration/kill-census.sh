#!/bin/bash
# SPDX-License-Identifier: MIT
# kill -9 census: shimmed clients and (forked) servers are killed at random
# points of connect / stream / close, 2,000 times or for 120 s, whichever
# comes first; afterwards no channel slot and no ring may be left claimed
# (ivsockctl channels / vm list --json: rings_used of every VM is 0) and new
# connections must still get rings. Run under the global test lock:
#   flock /run/ivsock-global-test.lock bash tests/integration/kill-census.sh
#
#   shim-stream clients 10.78.0.1 ──veth── 10.78.0.2 shim-stream --fork server
set -eu
cd "$(dirname "$0")/../.."
. preload/tests/shim-env.sh
shim_env_up
export IVSOCK_STATS=1
D=$SHIM_ENV_DIR
ITER=${KILL_CENSUS_ITER:-2000}
SECS=${KILL_CENSUS_SECS:-120}
PORT=7411
stat_of() { grep -o "$2=[0-9]*" "$1" | tail -n 1 | cut -d= -f2; }
fail() { echo "FAIL: $*"; for f in "$D"/*.log; do echo "== $f"; tail -n 12 "$f"; done; exit 1; }
ns_pids() { ip netns pids "$(shim_ns "$1")"; }
# pids in namespace $1 running the shim tool with arguments matching $2
tool_pids() {
	local p
	for p in $(ns_pids "$1"); do
		{ tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null | grep -q "^$SHIM_TOOL .*$2" && echo "$p"
	done
	return 0
}
ppid_of() { awk '/^PPid:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }
# shim_run is a function: $! is a subshell, so the tools are found by
# namespace and command line (one client runs at a time)
start_server() {
	shim_run B "$SHIM_TOOL" --fork server $PORT 0 >>"$D/server.log" 2>&1 &
	for _ in $(seq 100); do
		SERVER=$(tool_pids B "server $PORT" | head -n 1)
		[ -n "$SERVER" ] && return 0
		sleep 0.02
	done
	fail "server did not start"
}
census() { # -> "channels rings_used_total"
	local ch ru
	ch=$(shim_ctl channels --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin).get("channels", [])))')
	ru=$(shim_ctl vm list --json | python3 -c '
import json, sys
j = json.load(sys.stdin)
vms = j.get("vms", j.get("vm", []))
if isinstance(vms, dict):
    vms = list(vms.values())
print(sum(int(v.get("rings_used", 0)) for v in vms))')
	echo "$ch $ru"
}

start_server
t0=$(date +%s)
i=0 kc=0 ks=0 kp=0
while [ $i -lt "$ITER" ] && [ $(( $(date +%s) - t0 )) -lt "$SECS" ]; do
	i=$((i + 1))
	case $((RANDOM % 3)) in
	0) shim_run A timeout -s KILL 60 "$SHIM_TOOL" cycles "$SHIM_B_IP" $PORT 1000000 >/dev/null 2>&1 & ;;
	1) shim_run A timeout -s KILL 60 "$SHIM_TOOL" client "$SHIM_B_IP" $PORT $((256 << 20)) 1 >/dev/null 2>&1 & ;;
	2) shim_run A timeout -s KILL 60 "$SHIM_TOOL" --speak-first client "$SHIM_B_IP" $PORT 65536 400 >/dev/null 2>&1 & ;;
	esac
	cli=$!
	# the tool itself first (ivsock-run execs it; on a busy machine that
	# can take longer than the random delay), then a random point of it
	for _ in $(seq 200); do
		[ -n "$(tool_pids A "$SHIM_B_IP $PORT")" ] || ! kill -0 "$cli" 2>/dev/null && break
		sleep 0.01
	done
	sleep "$(printf '0.%03d' $((RANDOM % 25)))"
	for p in $(tool_pids A "$SHIM_B_IP $PORT"); do
		kill -9 "$p" 2>/dev/null && kc=$((kc + 1))
	done
	# a forked server child, at a random point of its connection
	if [ $((RANDOM % 2)) = 0 ]; then
		for p in $(tool_pids B "server $PORT"); do
			[ "$(ppid_of "$p")" = "$SERVER" ] || continue
			kill -9 "$p" 2>/dev/null && ks=$((ks + 1))
			break
		done
	fi
	# now and then the listening server itself
	if [ $((i % 100)) = 0 ]; then
		kill -9 "$SERVER" 2>/dev/null && kp=$((kp + 1))
		for _ in $(seq 50); do [ -d "/proc/$SERVER" ] || break; sleep 0.02; done
		start_server
	fi
	wait "$cli" 2>/dev/null || true
done
echo "$i rounds in $(( $(date +%s) - t0 )) s: killed $kc clients, $ks server children, $kp listening servers"
# stop everything that is left, then count
for p in $(tool_pids A "" ) $(tool_pids B ""); do kill -9 "$p" 2>/dev/null || true; done
ok=0
for _ in $(seq 100); do
	read -r ch ru < <(census)
	if [ "$ch" = 0 ] && [ "$ru" = 0 ]; then ok=1; break; fi
	sleep 0.1
done
echo "census: $ch channels, $ru rings claimed"
[ $ok = 1 ] || fail "leaked after kill -9: $(shim_ctl channels --json | head -c 2000)"
grep -q "no channel/rings\|ENOSPC" "$D"/*.log 2>/dev/null && echo "(note: pool was momentarily full during the run)"

echo "== new connections still get rings"
start_server
shim_run A timeout 60 "$SHIM_TOOL" multi "$SHIM_B_IP" $PORT 65536 15 2>"$D/multi.out" || fail "multi after census"
[ "$(stat_of "$D/multi.out" accelerated_connect)" = 15 ] || fail "no rings for new connections: $(cat "$D/multi.out")"
shim_run A timeout 60 "$SHIM_TOOL" client "$SHIM_B_IP" $PORT $((8 << 20)) 1 2>"$D/last.out" || fail "stream after census"
[ "$(stat_of "$D/last.out" accelerated_connect)" = 1 ] || fail "stream not accelerated"
kill -9 "$SERVER" 2>/dev/null || true
echo PASS
