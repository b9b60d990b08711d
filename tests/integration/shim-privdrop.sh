#!/bin/bash
# SPDX-License-Identifier: MIT
# Servers started as root that drop privileges stay accelerated: the shim
# connects to the agent as root (and, in a forked child holding accelerated
# sockets, in fork()), the agent authorises that connection once, and
# setuid() later does not take it away.
#   setuid after listen, serving in-process
#   pre-forked workers that setuid(nobody) before accept()
# Every byte echoed exactly, over the rings (client counters, ivsockctl).
# A program started as nobody is accelerated too: every local user is
# served by default since the agent brokers the tables (docs/broker.md; it
# was refused before). More kinds and two users: shim-users.sh.
set -eu
cd "$(dirname "$0")/../.."
. preload/tests/shim-env.sh
shim_env_up
HOSTILE=$SHIM_OB/preload/tests/shim-hostile
[ -x "$HOSTILE" ] || { echo "SKIP: $HOSTILE not built"; exit 77; }
NOBODY=$(id -u nobody 2>/dev/null) || { echo "SKIP: no user nobody"; exit 77; }
export IVSOCK_STATS=1
stat_of() { grep -o "$2=[0-9]*" "$1" | cut -d= -f2 | sort -n | tail -n 1; }
fail() { echo "FAIL: $*"; for f in "$SHIM_ENV_DIR"/*.log "$SHIM_ENV_DIR"/*.out; do echo "== $f"; tail -n 20 "$f"; done; exit 1; }
MB=$((8 << 20))
N=3
port=7600
for mode in server-setuid server-prefork; do
	port=$((port + 1))
	echo "== $mode (uid $NOBODY), $N connections"
	shim_run B timeout 60 "$HOSTILE" $mode $port $N "$NOBODY" >"$SHIM_ENV_DIR/srv-$port.out" 2>&1 &
	srv=$!
	sleep 0.5
	shim_run A timeout 60 "$SHIM_TOOL" client "$SHIM_B_IP" $port $MB $N \
		2>"$SHIM_ENV_DIR/cli-$port.out" || fail "client ($mode)"
	wait $srv || fail "server ($mode)"
	grep -q "shim-hostile: ok" "$SHIM_ENV_DIR/srv-$port.out" || fail "$mode not ok"
	[ "$(stat_of "$SHIM_ENV_DIR/cli-$port.out" accelerated_connect)" = $N ] || fail "$mode: client not accelerated"
	[ "$(stat_of "$SHIM_ENV_DIR/cli-$port.out" ring_rx_bytes)" = $((N * MB)) ] ||
		fail "$mode: echo not on the rings (the workers could not attach)"
	[ "$(stat_of "$SHIM_ENV_DIR/cli-$port.out" fallback_attach_timeout)" = 0 ] || fail "$mode: fell back"
done

echo "== a program started as nobody is accelerated (every user is served by default)"
shim_exec B setpriv --reuid="$NOBODY" --regid="$(id -g nobody)" --clear-groups \
	env LD_PRELOAD="$SHIM_LIB" IVSOCK_STATS=1 IVSOCK_LOG=debug timeout 20 "$SHIM_TOOL" server 7650 1 \
	>"$SHIM_ENV_DIR/srv-nobody.out" 2>&1 &
srv=$!
for _ in $(seq 100); do grep -q "^listening" "$SHIM_ENV_DIR/srv-nobody.out" 2>/dev/null && break; sleep 0.05; done
shim_run A timeout 20 "$SHIM_TOOL" client "$SHIM_B_IP" 7650 $MB 1 2>"$SHIM_ENV_DIR/cli-nobody.out" ||
	fail "client to the unprivileged server"
wait $srv || fail "the unprivileged server"
[ "$(stat_of "$SHIM_ENV_DIR/srv-nobody.out" listeners_registered)" = 1 ] ||
	fail "a program started as nobody registered no listener"
[ "$(stat_of "$SHIM_ENV_DIR/srv-nobody.out" accelerated_accept)" = 1 ] ||
	fail "a program started as nobody was not accelerated"
[ "$(stat_of "$SHIM_ENV_DIR/cli-nobody.out" accelerated_connect)" = 1 ] ||
	fail "the client of a program started as nobody was not accelerated"
[ "$(stat_of "$SHIM_ENV_DIR/cli-nobody.out" ring_rx_bytes)" = $MB ] ||
	fail "echo of the program started as nobody not on the rings"
[ "$(stat_of "$SHIM_ENV_DIR/srv-nobody.out" ring_tx_bytes)" = $MB ] ||
	fail "the program started as nobody did not send on the rings"
echo "shim-privdrop: all passed"
