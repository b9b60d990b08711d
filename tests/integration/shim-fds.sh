#!/bin/bash
# SPDX-License-Identifier: MIT
# The shim never writes through a descriptor it does not own: programs that
# closefrom(3) / close_range(3, ~0U) at start-up, or dup2() a file over every
# fd number the shim holds (found in /proc/self/fd), then open a file and use
# accelerated sockets, with the shim logging at debug level to stderr and to
# IVSOCK_LOG_FILE. The file must hold exactly what the program wrote, every
# echoed byte must be right, the closed numbers must look never opened
# (EBADF), and the connections must still be on the rings.
set -eu
cd "$(dirname "$0")/../.."
. preload/tests/shim-env.sh
shim_env_up
HOSTILE=$SHIM_OB/preload/tests/shim-hostile
[ -x "$HOSTILE" ] || { echo "SKIP: $HOSTILE not built"; exit 77; }
export IVSOCK_STATS=1 IVSOCK_LOG=debug
stat_of() { grep -o "$2=[0-9]*" "$1" | cut -d= -f2 | sort -n | tail -n 1; }
fail() { echo "FAIL: $*"; for f in "$SHIM_ENV_DIR"/*.log "$SHIM_ENV_DIR"/*.out; do echo "== $f"; tail -n 20 "$f"; done; exit 1; }
MB=$((4 << 20))
port=7400
for mode in client-closefrom client-closerange client-dup2; do
	for log in stderr file; do
		port=$((port + 1))
		echo "== $mode, log to $log"
		shim_run B timeout 60 "$SHIM_TOOL" server $port 2 >"$SHIM_ENV_DIR/srv-$port.out" 2>&1 &
		srv=$!
		sleep 0.3
		out=$SHIM_ENV_DIR/cli-$port.out
		file=$SHIM_ENV_DIR/file-$port
		if [ $log = file ]; then
			IVSOCK_LOG_FILE=$SHIM_ENV_DIR/shim-$port.log shim_run A timeout 60 \
				"$HOSTILE" $mode "$SHIM_B_IP" $port $MB "$file" >"$out" 2>&1 ||
				fail "$mode ($log)"
			cat "$SHIM_ENV_DIR/shim-$port.log" >>"$out"
		else
			shim_run A timeout 60 "$HOSTILE" $mode "$SHIM_B_IP" $port $MB "$file" \
				>"$out" 2>&1 || fail "$mode ($log)"
		fi
		wait $srv || fail "server ($mode, $log)"
		grep -q "shim-hostile: ok" "$out" || fail "$mode: no ok"
		grep -q "ivsock\[" "$file" && fail "$mode: shim output in the program's file"
		# the shim still logged (to its own copy of stderr / its file)
		grep -q "ivsock\[[0-9]*\] debug" "$out" || fail "$mode ($log): the shim's log went missing"
		[ "$(stat_of "$out" accelerated_connect)" = 2 ] || fail "$mode ($log): not accelerated"
		[ "$(stat_of "$out" ring_rx_bytes)" = $((MB + MB / 4 + 1)) ] ||
			fail "$mode ($log): echo not on the rings"
	done
done
echo "shim-fds: all passed"
