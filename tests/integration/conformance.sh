#!/bin/bash
# SPDX-License-Identifier: MIT
# Conformance suite: each program of tests/conformance/ runs once over plain
# TCP and once with both ends under ivsock-run, server in one lab VM, client
# in another (or both in one VM for loopback cases). The transcripts of the
# two runs must be identical, every byte is verified by its receiver, and the
# shimmed run must have moved bytes through a ring (IVSOCK_STATS=1 counters
# of either process, or the channel's counters in `ivsockctl channels`).
#
#   ivs-h1-vm1 (server, 10.77.1.1 / fd77::1:1) ── br0 ── ivs-h1-vm2 (client)
#
# Usage: conformance.sh [CASE-FILTER]      (exit 77 if the shim is not built;
#        the plain-TCP half still runs and must pass)
# Environment: CONF_KEEP=1 keeps the work dir; CONF_TIMEOUT (s, default 60).
set -u
cd "$(dirname "$0")/../.."
. tests/lab/lib.sh
BIN=$LAB_OB/tests/conformance
TMO=${CONF_TIMEOUT:-60}
FILTER=${1:-}

[ -x "$BIN/cf_blocking" ] || { echo "SKIP: conformance programs not built ($BIN): run make"; exit 77; }
lab_begin
W=$(mktemp -d /tmp/ivsock-conf.XXXXXX)
[ -n "${CONF_KEEP:-}" ] || LAB_EXIT_HOOKS+=("rm -rf $W")

SHIM=1
if ! why=$(lab_shim_ready); then SHIM=0; fi
[ $SHIM -eq 1 ] && { "$LAB" wait-ready 30 || { echo "FAIL: lab not ready"; exit 1; }; }

V4S=$("$LAB" ip vm1); V6S=$("$LAB" ip vm1 -6)
# name program server-vm client-vm address
CASES="
blocking     cf_blocking    vm1 vm2 $V4S
blocking-v6  cf_blocking    vm1 vm2 $V6S
nonblock     cf_nonblock    vm1 vm2 $V4S
vec          cf_vec         vm1 vm2 $V4S
partial      cf_partial     vm1 vm2 $V4S
flags        cf_flags       vm1 vm2 $V4S
poll         cf_poll        vm1 vm2 $V4S
select       cf_select      vm1 vm2 $V4S
epoll        cf_epoll       vm1 vm2 $V4S
evloop       cf_evloop      vm1 vm2 $V4S
shutdown     cf_shutdown    vm1 vm2 $V4S
peerdeath    cf_peerdeath   vm1 vm2 $V4S
epipe        cf_epipe       vm1 vm2 $V4S
ioctl        cf_ioctl       vm1 vm2 $V4S
dup          cf_dup         vm1 vm2 $V4S
sendfile     cf_sendfile    vm1 vm2 $V4S
fork         cf_fork        vm1 vm2 $V4S
threads      cf_threads     vm1 vm2 $V4S
eintr        cf_eintr       vm1 vm2 $V4S
inet-v4      cf_inet        vm1 vm2 $V4S
inet-v6      cf_inet        vm1 vm2 $V6S
inet-lo4     cf_inet        vm1 vm1 127.0.0.1
inet-lo6     cf_inet        vm1 vm1 ::1
banner       cf_banner      vm1 vm2 $V4S
"

# Channel counters of the host while a case runs: print "dport tx rx" lines.
sample_channels() { # port outfile
	while :; do
		"$IVSOCKCTL" -s "${IVSOCK_LAB_DIR:-/run/ivsock-lab}/h1/ctl.sock" channels --json 2>/dev/null |
			jq -r --argjson p "$1" '.channels[]? | select(.tuple.dport == $p or .tuple.sport == $p)
				| "\(.tuple.dport) \([.ends[].tx_bytes] | add) \([.ends[].rx_bytes] | add)"' \
			>>"$2" 2>/dev/null
		sleep 0.1
	done
}

# Both modes use the same port per case (the server sets SO_REUSEADDR), so
# that addresses in the transcripts match.
# Run one case in one mode; transcripts to $W/NAME.MODE.{server,client}.
run_case() { # name prog svm cvm addr port mode
	local name=$1 prog=$2 svm=$3 cvm=$4 addr=$5 port=$6 mode=$7 pre=() spid cpid src crc smp=
	local o=$W/$name.$mode
	[ "$mode" = shim ] && pre=(env IVSOCK_STATS=1 "$IVSOCK_RUN")
	rm -f "$o.ready"
	CONF_READY_FILE=$o.ready "$LAB" exec "$svm" timeout -k 5 "$TMO" "${pre[@]}" \
		"$BIN/$prog" server "$addr" "$port" >"$o.server" 2>"$o.server.err" &
	spid=$!
	# Start the client once the server's listen() has returned (the client
	# would retry anyway; this keeps it from racing the registration).
	for _ in $(seq 100); do [ -e "$o.ready" ] || ! kill -0 $spid 2>/dev/null && break; sleep 0.05; done
	if [ "$mode" = shim ]; then sample_channels "$port" "$o.chan" & smp=$!; fi
	"$LAB" exec "$cvm" timeout -k 5 "$TMO" "${pre[@]}" "$BIN/$prog" client "$addr" "$port" \
		>"$o.client" 2>"$o.client.err" &
	cpid=$!
	wait $cpid; crc=$?
	wait $spid; src=$?
	[ -n "$smp" ] && { kill "$smp" 2>/dev/null; wait "$smp" 2>/dev/null; }
	echo "exit $src" >>"$o.server"
	echo "exit $crc" >>"$o.client"
}

stat_sum() { # errfile counter -> sum over all "stats:" lines
	grep -ho "$2=[0-9]*" "$1" 2>/dev/null | awk -F= '{s += $2} END {printf "%.0f\n", s}'
}

# A random port block per invocation, below the ephemeral range, so that two
# runs sharing one lab do not collide.
PORT_BASE=$((20000 + (RANDOM % 110) * 100))
fails=() shimfails=() n=0
for mode in plain shim; do
	port=$PORT_BASE
	[ "$mode" = shim ] && [ $SHIM -eq 0 ] && break
	while read -r name prog svm cvm addr; do
		[ -n "$name" ] || continue
		[ -z "$FILTER" ] || [[ "$name" == *"$FILTER"* ]] || continue
		port=$((port + 1))
		run_case "$name" "$prog" "$svm" "$cvm" "$addr" "$port" "$mode"
		o=$W/$name.$mode
		if [ "$mode" = plain ]; then
			n=$((n + 1))
			if grep -q '^FAIL\|^MISMATCH' "$o.server" "$o.client" ||
			   ! grep -qx 'exit 0' "$o.server" || ! grep -qx 'exit 0' "$o.client"; then
				echo "--- FAIL $name (plain TCP: the test itself is broken)"
				tail -n 5 "$o.server" "$o.client" "$o.server.err" "$o.client.err"
				fails+=("$name/plain")
			else
				echo "--- ok   $name (plain)"
			fi
			continue
		fi
		bad=""
		for end in server client; do
			if ! diff -u --label "$name $end plain" --label "$name $end shim" \
				"$W/$name.plain.$end" "$o.$end" >"$o.$end.diff"; then
				bad="$bad transcript-$end"
			fi
		done
		stx=$(stat_sum "$o.server.err" ring_tx_bytes); srx=$(stat_sum "$o.server.err" ring_rx_bytes)
		ctx=$(stat_sum "$o.client.err" ring_tx_bytes); crx=$(stat_sum "$o.client.err" ring_rx_bytes)
		chan=$(awk '$2 > 0 || $3 > 0' "$o.chan" 2>/dev/null | wc -l)
		# Processes that end in _exit or a signal print no counters: ring
		# traffic seen by either end (or by the host) is the proof.
		if [ $((stx + srx + ctx + crx)) -eq 0 ] && [ "$chan" -eq 0 ]; then
			bad="$bad no-ring-traffic"
		fi
		if [ -z "$bad" ]; then
			echo "--- ok   $name (shim: transcripts identical; ring bytes server tx=$stx rx=$srx client tx=$ctx rx=$crx)"
		else
			echo "--- FAIL $name (shim:$bad; ring bytes server tx=$stx rx=$srx client tx=$ctx rx=$crx, channel samples $chan)"
			cat "$o.server.diff" "$o.client.diff" 2>/dev/null | head -n 40
			grep -h -v 'stats:' "$o.server.err" "$o.client.err" 2>/dev/null | head -n 10
			shimfails+=("$name")
		fi
	done <<<"$CASES"
done

echo
echo "conformance: $n cases; plain failures: ${#fails[@]}; shim failures: ${#shimfails[@]}"
[ ${#fails[@]} -eq 0 ] || echo "plain failures: ${fails[*]}"
[ ${#shimfails[@]} -eq 0 ] || echo "shim failures: ${shimfails[*]}"
[ -n "${CONF_KEEP:-}" ] && echo "transcripts in $W"
[ ${#fails[@]} -eq 0 ] && [ ${#shimfails[@]} -eq 0 ] || exit 1
if [ $SHIM -eq 0 ]; then echo "SKIP: plain TCP half passed; shim half not run: $why"; exit 77; fi
echo "PASS"
