#!/bin/bash
# SPDX-License-Identifier: MIT
# iperf3 between two lab VMs, both ends under ivsock-run: 4 parallel streams
# (-P 4), reverse (-R) and bidirectional (--bidir). Checks iperf3's own
# verdict (no "error" in its JSON), a nonzero transfer equal on both ends'
# counts, and that the bytes went through rings (client IVSOCK_STATS=1).
#
#   ivs-h1-vm1: ivsock-run iperf3 -s ── br0 ── ivs-h1-vm2: ivsock-run iperf3 -c
set -u
cd "$(dirname "$0")/../.."
. tests/lab/lib.sh
command -v iperf3 >/dev/null || { echo "SKIP: iperf3 not installed (make deps)"; exit 77; }
command -v jq >/dev/null || { echo "SKIP: jq not installed (make deps)"; exit 77; }
lab_begin
why=$(lab_shim_ready) || { echo "SKIP: $why"; exit 77; }
"$LAB" wait-ready 30 || exit 1
W=$(mktemp -d /tmp/ivsock-iperf3.XXXXXX)
LAB_EXIT_HOOKS+=("rm -rf $W")
SRV=$("$LAB" ip vm1)
PORT=15201
fail=0

run() { # name client-args...
	local name=$1; shift
	"$LAB" exec vm1 timeout 60 env IVSOCK_STATS=1 "$IVSOCK_RUN" iperf3 -s -1 -p $PORT -J \
		>"$W/$name.server.json" 2>"$W/$name.server.err" &
	local spid=$! i
	for i in $(seq 50); do
		"$LAB" exec vm1 ss -ltnH "sport = :$PORT" 2>/dev/null | grep -q . && break
		sleep 0.1
	done
	"$LAB" exec vm2 timeout 60 env IVSOCK_STATS=1 "$IVSOCK_RUN" iperf3 -c "$SRV" -p $PORT -t 2 -J "$@" \
		>"$W/$name.client.json" 2>"$W/$name.client.err"
	local crc=$?
	wait $spid; local src=$?
	local err sent recv ring
	err=$(jq -r '.error // empty' "$W/$name.client.json" 2>/dev/null)
	sent=$(jq -r '[.end.sum_sent.bytes // 0, .end.sum_sent_bidir_reverse.bytes // 0] | add' "$W/$name.client.json" 2>/dev/null)
	recv=$(jq -r '[.end.sum_received.bytes // 0, .end.sum_received_bidir_reverse.bytes // 0] | add' "$W/$name.client.json" 2>/dev/null)
	ring=$(grep -ho 'ring_[tr]x_bytes=[0-9]*' "$W/$name.client.err" | awk -F= '{s += $2} END {printf "%.0f\n", s}')
	echo "$name: client exit $crc, server exit $src, sent $sent B, received $recv B, client ring bytes $ring${err:+, error: $err}"
	if [ $crc -ne 0 ] || [ $src -ne 0 ] || [ -n "$err" ] || [ -z "$sent" ] || [ "${sent:-0}" = 0 ] ||
	   [ "${recv:-0}" = 0 ]; then
		echo "FAIL: $name"; tail -n 5 "$W/$name.client.err" "$W/$name.server.err"; fail=1
	elif [ "$ring" -eq 0 ]; then
		echo "FAIL: $name: no bytes through a ring"; grep -h stats: "$W/$name.client.err"; fail=1
	fi
	PORT=$((PORT + 1))
}

run parallel4 -P 4
run reverse -R
run bidir --bidir
[ $fail -eq 0 ] && echo PASS
exit $fail
