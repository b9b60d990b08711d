# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# netperf helpers on the lab (sourced after tests/lab/lib.sh): start/stop a
# netserver in a VM (plain or under ivsock-run), run one netperf test and
# parse its result, and read the shim's IVSOCK_STATS=1 counters.
#
#   np_server_start VM PORT plain|shim LOG   (pid in NP_SERVER_PID)
#   np_server_stop
#   np_run VM ADDR PORT plain|shim TEST SIZE SECS ERRLOG
#       prints "VALUE UNITS LOCAL_CPU REMOTE_CPU" (units 10^6bits/s or Trans/s)
#       TEST: TCP_STREAM TCP_MAERTS (SIZE = send size of the sending side),
#       TCP_RR (SIZE = request = response size), TCP_CRR (SIZE likewise)
#   np_stat ERRLOG COUNTER                  sum of COUNTER over "stats:" lines

NP_SERVER_PID=

np_server_start() { # vm port mode log
	local pre=() i
	[ "$3" = shim ] && pre=(env IVSOCK_STATS=1 "$IVSOCK_RUN")
	"$LAB" exec "$1" "${pre[@]}" netserver -D -p "$2" >"$4" 2>&1 &
	NP_SERVER_PID=$!
	for i in $(seq 50); do
		"$LAB" exec "$1" ss -ltnH "sport = :$2" 2>/dev/null | grep -q . && return 0
		sleep 0.1
	done
	echo "netserver did not come up on port $2:" >&2
	cat "$4" >&2
	return 1
}

np_server_stop() {
	[ -n "$NP_SERVER_PID" ] || return 0
	# `lab exec` execs into netserver: the pid is netserver's own.
	kill "$NP_SERVER_PID" 2>/dev/null || true
	wait "$NP_SERVER_PID" 2>/dev/null || true
	NP_SERVER_PID=
}

np_run() { # vm addr port mode test size secs errlog
	local vm=$1 addr=$2 port=$3 mode=$4 test=$5 size=$6 secs=$7 err=$8 pre=() opt out
	[ "$mode" = shim ] && pre=(env IVSOCK_STATS=1 "$IVSOCK_RUN")
	case $test in
	TCP_STREAM|TCP_MAERTS) opt=(-m "$size,$size") ;;
	TCP_RR|TCP_CRR) opt=(-r "$size,$size") ;;
	*) echo "np_run: unknown test $test" >&2; return 2 ;;
	esac
	out=$("$LAB" exec "$vm" timeout -k 5 $((secs + 30)) "${pre[@]}" netperf -H "$addr" -p "$port" \
		-l "$secs" -P 0 -c -C -t "$test" -- "${opt[@]}" \
		-o THROUGHPUT,THROUGHPUT_UNITS,LOCAL_CPU_UTIL,REMOTE_CPU_UTIL 2>>"$err") || {
		local rc=$?
		echo "netperf $test $size ($mode) failed: exit $rc$([ $rc -gt 128 ] && echo " (signal $((rc - 128)))")" >&2
		echo "$out" >&2; tail -n 5 "$err" >&2; return 1; }
	# Omni tests print the CSV asked for; TCP_CRR prints the classic table
	# (transaction rate in field 6, CPU in 7 and 8).
	echo "$out" | awk -F, '
		NF >= 2 && $1 ~ /^[0-9.]+$/ { print $1, $2, ($3 == "" ? -1 : $3), ($4 == "" ? -1 : $4); done = 1; exit }
		{ n = split($0, f, " "); if (n >= 6 && f[6] ~ /^[0-9.]+$/) { print f[6], "Trans/s", (n >= 7 ? f[7] : -1), (n >= 8 ? f[8] : -1); done = 1; exit } }
		END { if (!done) exit 1 }'
}

np_stat() { grep -ho "$2=[0-9]*" "$1" 2>/dev/null | awk -F= '{s += $2} END {printf "%.0f\n", s}'; }
