# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# Helpers for the tests of unprivileged users (shim-users.sh,
# shim-users-real.sh, shim-admission.sh, shim-privdrop.sh). Source after
# shim-env.sh.
#
#   users_ensure / users_cleanup   ivs-usera, ivs-userb (useradd if absent;
#                                  cleanup removes only what ensure created)
#   UA UB UA_ID UB_ID UA_GID UB_GID
#   as_user USER A|B CMD...        CMD under ivsock-run in the namespace, as
#                                  USER from exec (setpriv, no groups)
#   stat_sum FILE NAME             NAME summed over FILE's stats lines
#   stat_pid FILE PID NAME         NAME in the stats line of PID
#   no_fallback FILE               every fallback_* (but not_tcp) is 0
#   pids_of_uid FILE UID           pids of "shim-users: serve pid=P uid=UID"
#   expect_served FILE PIDS CONNS BYTES WHAT [bytes-only]
#   wait_out FILE [TEXT]           until FILE holds TEXT (default "listening")
#   wait_file FILE                 until FILE exists
#   wait_tcp_listen A|B PORT       until the namespace has a TCP listener on PORT
#   no_channels_left               until ivsockctl lists no channel (bounded)

UA=ivs-usera
UB=ivs-userb
USERS_CREATED=()

users_ensure() {
	local u
	for u in "$UA" "$UB"; do
		if ! getent passwd "$u" >/dev/null; then
			useradd --system --user-group --no-create-home --home-dir /nonexistent \
				--shell /usr/sbin/nologin "$u" || { echo "SKIP: useradd $u failed"; exit 77; }
			USERS_CREATED+=("$u")
		fi
	done
	UA_ID=$(id -u "$UA") UB_ID=$(id -u "$UB")
	UA_GID=$(id -g "$UA") UB_GID=$(id -g "$UB")
}

users_cleanup() {
	local u
	for u in "${USERS_CREATED[@]}"; do userdel "$u" 2>/dev/null || true; done
	USERS_CREATED=()
}

as_user() { # USER A|B CMD...
	local u=$1 ns
	ns=$(shim_ns "$2")
	shift 2
	ip netns exec "$ns" setpriv --reuid="$(id -u "$u")" --regid="$(id -g "$u")" --clear-groups \
		"$SHIM_RUNNER" --lib "$SHIM_LIB" "$@"
}

stat_sum() {
	grep -o "$2=[0-9]*" "$1" 2>/dev/null | cut -d= -f2 | awk '{s += $1} END {print s + 0}'
}
stats_line() { grep -o "ivsock\[$2\] stats:.*" "$1" | tail -n 1; }
stat_pid() { stats_line "$1" "$2" | grep -o " $3=[0-9]*" | cut -d= -f2; }
no_fallback() {
	! grep -o "fallback_[a-z_]*=[0-9]*" "$1" | grep -v "^fallback_not_tcp=" | grep -qv "=0$"
}
pids_of_uid() {
	sed -n "s/^shim-users: serve pid=\([0-9]*\) uid=$2 .*/\1/p" "$1" | xargs
}

expect_served() { # FILE PIDS CONNS BYTES WHAT [bytes-only]
	local f=$1 conns=$3 bytes=$4 what=$5 only=${6:-} p l
	for p in $2; do
		l=$(stats_line "$f" "$p")
		[ -n "$l" ] || fail "$what: pid $p printed no stats"
		if [ "$only" != bytes-only ]; then
			[ "$(stat_pid "$f" "$p" accelerated_accept)" = "$conns" ] ||
				fail "$what: pid $p accelerated $(stat_pid "$f" "$p" accelerated_accept) of $conns accepts: $l"
		fi
		[ "$(stat_pid "$f" "$p" ring_rx_bytes)" = "$bytes" ] || fail "$what: pid $p rx not on the rings: $l"
		[ "$(stat_pid "$f" "$p" ring_tx_bytes)" = "$bytes" ] || fail "$what: pid $p tx not on the rings: $l"
		echo "$l" | grep -o "fallback_[a-z_]*=[0-9]*" | grep -v "^fallback_not_tcp=" | grep -qv "=0$" &&
			fail "$what: pid $p fell back: $l"
		grep -q "^shim-users: done pid=$p uid=[0-9]* conns=$conns bytes=$bytes$" "$f" ||
			fail "$what: pid $p did not serve $conns connection(s) of $bytes bytes"
	done
	return 0
}

wait_out() {
	local i
	for i in $(seq 200); do grep -q "${2:-listening}" "$1" 2>/dev/null && return 0; sleep 0.05; done
	return 1
}
wait_file() {
	local i
	for i in $(seq 1200); do [ -e "$1" ] && return 0; sleep 0.05; done
	return 1
}
wait_tcp_listen() {
	local i
	for i in $(seq 200); do
		[ -n "$(shim_exec "$1" ss -Hltn "sport = :$2")" ] && return 0
		sleep 0.05
	done
	return 1
}
no_channels_left() {
	local i
	for i in $(seq 50); do
		shim_ctl channels --json | tr -d ' \n' | grep -q '"channels":\[\]' && return 0
		sleep 0.1
	done
	return 1
}
