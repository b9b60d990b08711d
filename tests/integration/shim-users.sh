#!/bin/bash
# SPDX-License-Identifier: MIT
# Unprivileged servers are accelerated, whoever they run as (issue 9: the
# agent is the broker; every local user is served by default). Two users of
# our own, ivs-usera and ivs-userb (created with useradd if absent, removed
# at the end only if this test created them), so that a process of user A
# and one of user B both get rings. Servers: shim-users (preload/tests/
# shim_users.c), each serving process prints its pid and uid, and its shim
# prints "ivsock[PID] stats:" (IVSOCK_STATS=1), so every counter below is
# tied to a user:
#   1. pre-forked: root listens, forks a worker per user, each worker
#      setgroups/setgid/setuid()s, then accepts 2 connections and echoes;
#   2. setuid() after listen() (one server per user), then 3 accepts;
#   3. accept, fork; the child setuid()s (users alternate) and installs a
#      seccomp filter (SIGSYS on socket/socketpair/connect/eventfd, EACCES
#      on open/openat/openat2/creat), then echoes;
#   4. server and client unprivileged from exec (setpriv --reuid): server
#      as ivs-usera, client as ivs-userb; while connections are held, the
#      agents list the users' uids among their clients.
# 16 MiB each way per connection, every byte checked by the client
# (shim-stream / shim-users hold), counters of both sides: accelerated
# accept/connect, ring_rx_bytes and ring_tx_bytes exact, no fallback.
#
#   ivshim-PID-a 10.78.0.1 ──veth── 10.78.0.2 ivshim-PID-b      ivsockd + 2 agents
#   (clients)                         (servers)
set -eu
cd "$(dirname "$0")/../.."
. preload/tests/shim-env.sh
USERS_TOOL=$SHIM_OB/preload/tests/shim-users
[ -x "$USERS_TOOL" ] || { echo "SKIP: $USERS_TOOL not built"; exit 77; }
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
command -v useradd >/dev/null && command -v setpriv >/dev/null || { echo "SKIP: useradd/setpriv missing"; exit 77; }
command -v jq >/dev/null || { echo "SKIP: jq missing"; exit 77; }
. preload/tests/users-env.sh
shim_env_up
users_ensure
trap 'shim_env_down; users_cleanup' EXIT
chmod 1777 "$SHIM_ENV_DIR" # the users' ready files
export IVSOCK_STATS=1
MB=$((16 << 20))
fail() { echo "FAIL: $*"; for f in "$SHIM_ENV_DIR"/*.log "$SHIM_ENV_DIR"/*.out; do echo "== $f"; tail -n 20 "$f"; done; exit 1; }

# client_check FILE CONNS: a root shim-stream client's counters
client_check() {
	local f=$1 n=$2 what=$3
	[ "$(stat_sum "$f" accelerated_connect)" = "$n" ] || fail "$what: client: $(stat_sum "$f" accelerated_connect) of $n connections accelerated"
	[ "$(stat_sum "$f" ring_tx_bytes)" = $((n * MB)) ] || fail "$what: client tx not all on the rings"
	[ "$(stat_sum "$f" ring_rx_bytes)" = $((n * MB)) ] || fail "$what: client rx not all on the rings"
	no_fallback "$f" || fail "$what: client fell back: $(grep stats "$f")"
}

echo "== 1. pre-forked workers as $UA and $UB (setuid before accept), 2 connections each"
shim_run B timeout 120 "$USERS_TOOL" prefork 7801 2 "$UA,$UB" >"$SHIM_ENV_DIR/srv1.out" 2>&1 &
srv=$!
wait_out "$SHIM_ENV_DIR/srv1.out" || fail "prefork server did not listen"
shim_run A timeout 120 "$SHIM_TOOL" client "$SHIM_B_IP" 7801 $MB 4 2>"$SHIM_ENV_DIR/cli1.out" ||
	fail "client to the pre-forked server"
wait $srv || fail "pre-forked server"
grep -q "shim-users: ok" "$SHIM_ENV_DIR/srv1.out" || fail "pre-forked server not ok"
client_check "$SHIM_ENV_DIR/cli1.out" 4 prefork
for u in "$UA_ID" "$UB_ID"; do
	pids=$(pids_of_uid "$SHIM_ENV_DIR/srv1.out" "$u")
	[ "$(echo "$pids" | wc -w)" = 1 ] || fail "prefork: workers of uid $u: '$pids'"
	expect_served "$SHIM_ENV_DIR/srv1.out" "$pids" 2 $((2 * MB)) "prefork worker uid $u"
	echo "worker pid $pids uid $u: $(stats_line "$SHIM_ENV_DIR/srv1.out" "$pids" | cut -c1-160)"
done

echo "== 2. setuid() after listen(): one server as $UA, one as $UB, 3 connections each"
srv2=()
for i in 0 1; do
	u=$([ $i = 0 ] && echo "$UA" || echo "$UB")
	shim_run B timeout 120 "$USERS_TOOL" setuid $((7802 + i)) 3 "$u" >"$SHIM_ENV_DIR/srv2$i.out" 2>&1 &
	srv2[$i]=$!
done
wait_out "$SHIM_ENV_DIR/srv20.out" && wait_out "$SHIM_ENV_DIR/srv21.out" || fail "setuid servers did not listen"
shim_run A timeout 120 "$SHIM_TOOL" client "$SHIM_B_IP" 7802 $MB 3 2>"$SHIM_ENV_DIR/cli20.out" &
c0=$!
shim_run A timeout 120 "$SHIM_TOOL" client "$SHIM_B_IP" 7803 $MB 3 2>"$SHIM_ENV_DIR/cli21.out" ||
	fail "client to the setuid server of $UB"
wait $c0 || fail "client to the setuid server of $UA"
wait "${srv2[0]}" || fail "setuid server of $UA"
wait "${srv2[1]}" || fail "setuid server of $UB"
for i in 0 1; do
	u=$([ $i = 0 ] && echo "$UA_ID" || echo "$UB_ID")
	client_check "$SHIM_ENV_DIR/cli2$i.out" 3 "setuid uid $u"
	pids=$(pids_of_uid "$SHIM_ENV_DIR/srv2$i.out" "$u")
	[ "$(echo "$pids" | wc -w)" = 1 ] || fail "setuid: server of uid $u: '$pids'"
	expect_served "$SHIM_ENV_DIR/srv2$i.out" "$pids" 3 $((3 * MB)) "setuid server uid $u"
done

echo "== 3. per-connection child: setuid() + seccomp, users alternate, 4 connections"
shim_run B timeout 120 "$USERS_TOOL" seccomp 7804 4 "$UA,$UB" >"$SHIM_ENV_DIR/srv3.out" 2>&1 &
srv=$!
wait_out "$SHIM_ENV_DIR/srv3.out" || fail "seccomp server did not listen"
shim_run A timeout 120 "$SHIM_TOOL" client "$SHIM_B_IP" 7804 $MB 4 2>"$SHIM_ENV_DIR/cli3.out" ||
	fail "client to the sandboxed children"
wait $srv || fail "seccomp server: a sandboxed child failed or was killed"
client_check "$SHIM_ENV_DIR/cli3.out" 4 seccomp
[ "$(grep -c "shim-users: sandboxed" "$SHIM_ENV_DIR/srv3.out")" = 4 ] || fail "not 4 sandboxed children"
for u in "$UA_ID" "$UB_ID"; do
	pids=$(pids_of_uid "$SHIM_ENV_DIR/srv3.out" "$u")
	[ "$(echo "$pids" | wc -w)" = 2 ] || fail "seccomp: children of uid $u: '$pids'"
	for p in $pids; do
		# a child's accept counter is its parent's at fork: only bytes are its own
		expect_served "$SHIM_ENV_DIR/srv3.out" "$p" 1 $MB "sandboxed child uid $u" bytes-only
	done
done
parent=$(grep -o 'ivsock\[[0-9]*\] stats:.*' "$SHIM_ENV_DIR/srv3.out" | grep -v "ring_rx_bytes=$MB " |
	grep -o "accelerated_accept=[0-9]*" | cut -d= -f2)
[ "$parent" = 4 ] || fail "seccomp: the accepting parent counted '$parent' accelerated accepts"

echo "== 4. unprivileged from exec: server as $UA, client as $UB (setpriv), 3 connections"
as_user "$UA" B timeout 120 "$SHIM_TOOL" server 7805 3 >"$SHIM_ENV_DIR/srv4.out" 2>&1 &
srv=$!
wait_out "$SHIM_ENV_DIR/srv4.out" || fail "unprivileged server did not listen"
as_user "$UB" A timeout 120 "$SHIM_TOOL" client "$SHIM_B_IP" 7805 $MB 3 2>"$SHIM_ENV_DIR/cli4.out" ||
	fail "unprivileged client"
wait $srv || fail "unprivileged server"
client_check "$SHIM_ENV_DIR/cli4.out" 3 "unprivileged client"
[ "$(stat_sum "$SHIM_ENV_DIR/srv4.out" accelerated_accept)" = 3 ] || fail "unprivileged server: not accelerated"
[ "$(stat_sum "$SHIM_ENV_DIR/srv4.out" listeners_registered)" = 1 ] || fail "unprivileged server: no listener"
[ "$(stat_sum "$SHIM_ENV_DIR/srv4.out" ring_rx_bytes)" = $((3 * MB)) ] || fail "unprivileged server rx"
[ "$(stat_sum "$SHIM_ENV_DIR/srv4.out" ring_tx_bytes)" = $((3 * MB)) ] || fail "unprivileged server tx"

echo "== 4b. the same with connections held open: the agents see the users"
as_user "$UA" B timeout 120 "$SHIM_TOOL" server 7806 2 >"$SHIM_ENV_DIR/srv4b.out" 2>&1 &
srv=$!
wait_out "$SHIM_ENV_DIR/srv4b.out" || fail "unprivileged server 4b did not listen"
as_user "$UB" A timeout 120 "$USERS_TOOL" hold "$SHIM_B_IP" 7806 2 $MB "$SHIM_ENV_DIR/ready4b" \
	"$SHIM_ENV_DIR/go4b" >"$SHIM_ENV_DIR/cli4b.out" 2>&1 &
cli=$!
wait_file "$SHIM_ENV_DIR/ready4b" || fail "hold client not ready"
ua=$(shim_exec B "$SHIM_AGENT" --status | jq -c "[.clients[] | select(.uid == $UA_ID)] | length")
ub=$(shim_exec A "$SHIM_AGENT" --status | jq -c "[.clients[] | select(.uid == $UB_ID)] | length")
chans=$(shim_ctl channels --json | jq '[.channels[] | select(.state == "connected")] | length')
echo "agent B: $ua client(s) of uid $UA_ID; agent A: $ub of uid $UB_ID; $chans connected channel(s)"
[ "$ua" -ge 1 ] || fail "agent B does not list a client of uid $UA_ID"
[ "$ub" -ge 1 ] || fail "agent A does not list a client of uid $UB_ID"
[ "$chans" = 2 ] || fail "not 2 connected channels while held: $(shim_ctl channels --json)"
touch "$SHIM_ENV_DIR/go4b"
wait $cli || fail "hold client"
wait $srv || fail "unprivileged server 4b"
grep -q "shim-users: hold ok 2" "$SHIM_ENV_DIR/cli4b.out" || fail "hold client not ok"
[ "$(stat_sum "$SHIM_ENV_DIR/cli4b.out" accelerated_connect)" = 2 ] || fail "4b: not accelerated"
# 1 byte there and back per connection before the hold
[ "$(stat_sum "$SHIM_ENV_DIR/cli4b.out" ring_tx_bytes)" = $((2 * MB + 2)) ] || fail "4b: tx not on the rings"
[ "$(stat_sum "$SHIM_ENV_DIR/cli4b.out" ring_rx_bytes)" = $((2 * MB + 2)) ] || fail "4b: rx not on the rings"

echo "== no channel left behind"
no_channels_left || fail "channels leaked: $(shim_ctl channels --json)"
echo "shim-users: all passed"
