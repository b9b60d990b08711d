#!/bin/bash
# SPDX-License-Identifier: MIT
# netperf between two lab VMs, both ends under ivsock-run: TCP_STREAM,
# TCP_MAERTS, TCP_RR and TCP_CRR (2 s each). Checks that each test ran,
# produced a positive result, and moved its data through rings (the client
# shim's IVSOCK_STATS=1 counters). No timing assertions: speed is bench/'s.
#
#   ivs-h1-vm1: ivsock-run netserver ── br0 ── ivs-h1-vm2: ivsock-run netperf
set -u
cd "$(dirname "$0")/../.."
. tests/lab/lib.sh
. tests/lab/netperf.sh
command -v netperf >/dev/null && command -v netserver >/dev/null ||
	{ echo "SKIP: netperf not installed (make deps: Debian non-free)"; exit 77; }
netperf -V | grep -q 'Netperf version' || { echo "FAIL: netperf -V"; exit 1; }
netperf -V
lab_begin
why=$(lab_shim_ready) || { echo "SKIP: $why"; exit 77; }
"$LAB" wait-ready 30 || exit 1
W=$(mktemp -d /tmp/ivsock-netperf.XXXXXX)
LAB_EXIT_HOOKS+=("np_server_stop" "rm -rf $W")
PORT=12901
SRV=$("$LAB" ip vm1)
np_server_start vm1 $PORT shim "$W/netserver.log" || exit 1

fail=0
for spec in "TCP_STREAM 16384 ring_tx_bytes" "TCP_STREAM 64 ring_tx_bytes" \
	    "TCP_MAERTS 16384 ring_rx_bytes" "TCP_RR 1 ring_rx_bytes" "TCP_CRR 1 ring_rx_bytes"; do
	set -- $spec
	err=$W/$1-$2.err
	secs=2
	[ "$1" = TCP_CRR ] && secs=1 # fewer connections left in TIME_WAIT
	if ! res=$(np_run vm2 "$SRV" $PORT shim "$1" "$2" $secs "$err"); then
		echo "FAIL: $1 $2: netperf failed"; fail=1; continue
	fi
	read -r val units _ _ <<<"$res"
	ring=$(np_stat "$err" "$3")
	acc=$(np_stat "$err" accelerated_connect)
	echo "$1 size $2: $val $units; shim: accelerated_connect=$acc $3=$ring"
	if ! awk -v v="$val" 'BEGIN { exit !(v > 0) }'; then echo "FAIL: $1: no result"; fail=1; fi
	if [ "$ring" -eq 0 ]; then
		echo "FAIL: $1: no bytes went through a ring"; grep -h 'stats:\|ivsock' "$err" | tail -n 3
		fail=1
	fi
done
np_server_stop
[ $fail -eq 0 ] && echo PASS
exit $fail
