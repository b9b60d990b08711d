#!/bin/bash
# SPDX-License-Identifier: MIT
# The multiplexer conformance programs (tests/conformance/mux_*.c) in the
# lab: each runs once over plain TCP and once with both ends under
# ivsock-run; the transcripts must be identical and the shimmed run must
# have moved bytes through a ring (IVSOCK_STATS=1 counters).
#
#   ivs-h1-vm1 (server) ── br0 ── ivs-h1-vm2 (client)
#
# Usage: tests/conformance/mux_lab.sh [NAME-FILTER]   (exit 77: no lab/shim)
set -u
cd "$(dirname "$0")/../.."
. tests/lab/lib.sh
BIN=$LAB_OB/tests/conformance
TMO=${CONF_TIMEOUT:-60}
FILTER=${1:-}

ls "$BIN"/mux_* >/dev/null 2>&1 || { echo "SKIP: mux conformance programs not built: run make"; exit 77; }
lab_begin
why=$(lab_shim_ready) || { echo "SKIP: $why"; exit 77; }
"$LAB" wait-ready 30 || { echo "FAIL: lab not ready"; exit 1; }
W=$(mktemp -d /tmp/ivsock-mux.XXXXXX)
LAB_EXIT_HOOKS+=("rm -rf $W")
ADDR=$("$LAB" ip vm1)

run() { # prog port mode
	local prog=$1 port=$2 mode=$3 pre=() spid o=$W/$1.$3
	[ "$mode" = shim ] && pre=(env IVSOCK_STATS=1 "$IVSOCK_RUN")
	CONF_READY_FILE=$o.ready "$LAB" exec vm1 timeout -k 5 "$TMO" "${pre[@]}" \
		"$BIN/$prog" server "$ADDR" "$port" >"$o.server" 2>"$o.server.err" &
	spid=$!
	for _ in $(seq 100); do [ -e "$o.ready" ] || ! kill -0 $spid 2>/dev/null && break; sleep 0.05; done
	"$LAB" exec vm2 timeout -k 5 "$TMO" "${pre[@]}" "$BIN/$prog" client "$ADDR" "$port" \
		>"$o.client" 2>"$o.client.err"
	echo "exit $?" >>"$o.client"
	wait $spid
	echo "exit $?" >>"$o.server"
}

ring_bytes() { grep -ho 'ring_[rt]x_bytes=[0-9]*' "$@" 2>/dev/null | awk -F= '{s += $2} END {printf "%.0f\n", s}'; }

pass=0 fail=0 port=32100
for bin in "$BIN"/mux_*; do
	[ -x "$bin" ] || continue
	prog=$(basename "$bin")
	[ -z "$FILTER" ] || [[ "$prog" == *"$FILTER"* ]] || continue
	port=$((port + 1))
	run "$prog" $port plain
	run "$prog" $port shim
	bad=
	for end in server client; do
		grep -qx 'exit 0' "$W/$prog.plain.$end" || bad="$bad plain-$end-failed"
		diff -u --label "$prog $end plain" --label "$prog $end shim" \
			"$W/$prog.plain.$end" "$W/$prog.shim.$end" >"$W/$prog.$end.diff" || bad="$bad transcript-$end"
	done
	rb=$(ring_bytes "$W/$prog.shim.server.err" "$W/$prog.shim.client.err")
	[ "${rb:-0}" -gt 0 ] || bad="$bad no-ring-traffic"
	if [ -z "$bad" ]; then
		echo "--- ok   $prog (transcripts identical; ring bytes $rb)"
		pass=$((pass + 1))
	else
		echo "--- FAIL $prog:$bad"
		cat "$W/$prog.server.diff" "$W/$prog.client.diff" | head -n 40
		tail -n 5 "$W/$prog".*.err
		fail=$((fail + 1))
	fi
done
echo "$pass passed, $fail failed"
[ $fail -eq 0 ] && [ $pass -gt 0 ]
