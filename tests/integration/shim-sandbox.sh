#!/bin/bash
# SPDX-License-Identifier: MIT
# A privilege-separated server: accept, fork, and the per-connection child
# installs a seccomp filter that kills the process on socket(), socketpair(),
# open(), openat(), openat2(), connect(), eventfd() and eventfd2() before
# serving the accelerated connection (blocking reads, or poll() first). The shim must have made everything the child needs (agent
# connection, doorbells, its eventfd) at fork time: no SIGSYS, every byte
# echoed exactly, and over the rings (client and child counters).
set -eu
cd "$(dirname "$0")/../.."
. preload/tests/shim-env.sh
shim_env_up
HOSTILE=$SHIM_OB/preload/tests/shim-hostile
[ -x "$HOSTILE" ] || { echo "SKIP: $HOSTILE not built"; exit 77; }
export IVSOCK_STATS=1
stat_of() { grep -o "$2=[0-9]*" "$1" | cut -d= -f2 | sort -n | tail -n 1; }
fail() { echo "FAIL: $*"; for f in "$SHIM_ENV_DIR"/*.log "$SHIM_ENV_DIR"/*.out; do echo "== $f"; tail -n 20 "$f"; done; exit 1; }
MB=$((8 << 20))
N=3
port=7500
for run in server-seccomp:warn server-seccomp:debug server-seccomp-poll:warn; do
	mode=${run%%:*} log=${run#*:}
	port=$((port + 1))
	echo "== $mode: seccomp child per connection, $N connections, IVSOCK_LOG=$log"
	IVSOCK_LOG=$log shim_run B timeout 60 "$HOSTILE" "$mode" $port $N \
		>"$SHIM_ENV_DIR/srv-$port.out" 2>&1 &
	srv=$!
	sleep 0.3
	shim_run A timeout 60 "$SHIM_TOOL" client "$SHIM_B_IP" $port $MB $N \
		2>"$SHIM_ENV_DIR/cli-$port.out" || fail "client ($log)"
	wait $srv || fail "server: a sandboxed child died ($log)"
	grep -q "shim-hostile: ok" "$SHIM_ENV_DIR/srv-$port.out" || fail "server not ok"
	[ "$(stat_of "$SHIM_ENV_DIR/cli-$port.out" accelerated_connect)" = $N ] || fail "client not accelerated"
	[ "$(grep -o "ring_rx_bytes=[0-9]*" "$SHIM_ENV_DIR/cli-$port.out" | cut -d= -f2 | sort -n | tail -n 1)" = $((N * MB)) ] ||
		fail "echo not on the rings"
	# each sandboxed child echoed its connection on the rings
	kids=$(grep -c "ring_tx_bytes=$MB " "$SHIM_ENV_DIR/srv-$port.out" || true)
	[ "$kids" = $N ] || fail "$kids of $N sandboxed children sent on the rings"
done
echo "shim-sandbox: all passed"
