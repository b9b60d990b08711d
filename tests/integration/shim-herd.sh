#!/bin/bash
# SPDX-License-Identifier: MIT
# Ten thousand concurrent connections between the two VMs of the shim test
# bed, every one of them accelerated: an epoll echo server and a client of
# our own (preload/tests/conn_herd.c) under ivsock-run, 2 KiB echoed and
# checked on each connection on open and again on every round while all of
# them are held. The region is the default 256 MiB, cut for two VMs with a
# 1 KiB class for idle connections (docs/classes.md). Checks: every
# connection verified in every round, the shim's counters say every connect
# and accept was accelerated and none fell back, ivsockctl lists N connected
# channels of the 1 KiB class, and after close no channel is left.
#
#   ivshim-PID-a 10.78.0.1 ──veth── 10.78.0.2 ivshim-PID-b      ivsockd + 2 agents
set -eu
cd "$(dirname "$0")/../.."
N=${HERD_N:-10000}
. preload/tests/shim-env.sh
# fds: N in each program plus its own; the hard limit of the machine decides
need=$((N + 256))
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$need" ]; then
	echo "SKIP: $N connections need $need fds, the hard limit is $(ulimit -Hn)"
	exit 77
fi
ulimit -Sn "$need"
SHIM_REGION=256M
SHIM_DOMAIN_OPTS="max_vms=2,classes=1K:70+32K:5+1M:25,ring=1K"
shim_env_up >/dev/null
HERD=$SHIM_OB/preload/tests/conn-herd
D=$SHIM_ENV_DIR
PORT=7700
stat_of() { grep -o "$2=[0-9]*" "$1" | tail -n 1 | cut -d= -f2; }
fail() {
	echo "FAIL: $*"
	for f in "$D"/herd-*.err "$D"/ivsockd.log "$D"/agent-A.log; do
		[ -s "$f" ] || continue; echo "== $f"; tail -n 8 "$f"
	done
	exit 1
}
connected() { shim_ctl channels --json | jq '[.channels[] | select(.tuple.dport == '$PORT' and .state == "connected")] | length'; }
wait_round() { # round timeout_s
	local i
	for i in $(seq $(($2 * 10))); do
		[ "$(cat "$D/herd.ready" 2>/dev/null)" = "$1" ] && return 0
		kill -0 "$cli" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

IVSOCK_STATS=1 shim_run B "$HERD" server --bind 0.0.0.0 $PORT 2>"$D/herd-srv.err" &
srv=$!
for _ in $(seq 50); do grep -q listening "$D/herd-srv.err" 2>/dev/null && break; sleep 0.1; done
IVSOCK_STATS=1 shim_run A "$HERD" client "$SHIM_B_IP" $PORT "$N" --bytes 2048 --inflight 128 \
	--ready "$D/herd.ready" 2>"$D/herd-cli.err" &
cli=$!
wait_round 0 600 || fail "round 0 of $N connections did not complete"
grep "round 0" "$D/herd-cli.err"
n=$(connected)
echo "channels connected while held: $n (of $N)"
[ "$n" = "$N" ] || fail "$n of $N connections on rings"
shim_ctl channels --json | jq -e '[.channels[] | select(.tuple.dport == '$PORT') | .ring_size] | unique == [1024]' \
	>/dev/null || fail "not every channel in the 1 KiB class"
# every connection still carries bytes, checked, while all are held
# ($cli is the subshell running shim_run; signal the program itself)
herd=$(pgrep -f "conn-herd client $SHIM_B_IP $PORT" | head -n 1)
[ -n "$herd" ] || fail "client process not found"
kill -USR1 "$herd"
wait_round 1 300 || fail "round 1 did not complete"
grep "round 1" "$D/herd-cli.err"
kill -TERM "$herd"
wait "$cli" || fail "client exit $?"
pkill -TERM -f "conn-herd server --bind 0.0.0.0 $PORT"
wait "$srv" || fail "server exit $?"
grep herd-server "$D/herd-srv.err" | tail -n 1
[ "$(stat_of "$D/herd-cli.err" accelerated_connect)" = "$N" ] || fail "client: not every connect accelerated"
[ "$(stat_of "$D/herd-srv.err" accelerated_accept)" = "$N" ] || fail "server: not every accept accelerated"
if grep -o 'fallback_[a-z_]*=[1-9][0-9]*' "$D/herd-cli.err" "$D/herd-srv.err"; then
	fail "connections fell back to TCP"
fi
for _ in $(seq 50); do [ "$(connected)" = 0 ] && break; sleep 0.1; done
[ "$(connected)" = 0 ] || fail "channels left after close"
echo PASS
