#!/bin/bash
# SPDX-License-Identifier: MIT
# The late offer (docs/broker.md): the connector's agent posts the offer when
# PORT says the socket is connecting; the acceptor's ACCEPT may come first.
# Agent A (the clients') is told to serve PORT late
# (IVSOCK_AGENT_TEST_OPEN_DELAY_US); every byte is checked by shim-stream.
#   1. 200 ms, agent B holds ACCEPTs up to 50 ms (default) while A's marker
#      is there: not enough, each ACCEPT says "no offer" and the server stays
#      on TCP; B refuses each offer when it comes and rings the connector,
#      which falls back at once (fallback_acceptor_abandoned, never
#      fallback_attach_timeout: its attach timeout is 20 s here); B counts
#      late_offers.
#   2. 2 ms, default hold: B holds each ACCEPT until the offer comes, and
#      every connection is accelerated (held_accepts).
#   3. 2 ms, --accept-hold-us 0: never held, every connection the late way
#      (or, its offer first on a busy machine, accelerated).
#   4. no delay, a plain (unshimmed) client: no marker, never held.
#
#   ivshim-PID-a 10.78.0.1 ──veth── 10.78.0.2 ivshim-PID-b      ivsockd + 2 agents
set -eu
cd "$(dirname "$0")/../.."
. preload/tests/shim-env.sh
command -v jq >/dev/null || { echo "SKIP: jq missing"; exit 77; }
shim_env_up
export IVSOCK_STATS=1
stat_of() { grep -o "$2=[0-9]*" "$1" | tail -n 1 | cut -d= -f2; }
fail() { echo "FAIL: $*"; for f in "$SHIM_ENV_DIR"/*.out "$SHIM_ENV_DIR"/*.log; do echo "== $f"; tail -n 5 "$f"; done; exit 1; }
broker_b() { shim_exec B "$SHIM_AGENT" --status | jq -r ".broker.$1"; }
D=$SHIM_ENV_DIR
N=4

# run PORT TAG: N connections of 1 MiB each way, client in A, server in B
run() {
	shim_run B timeout 60 "$SHIM_TOOL" server "$1" $N >"$D/srv$2.out" 2>&1 &
	local srv=$!
	sleep 0.3
	IVSOCK_LOG=${LOGLEVEL:-} IVSOCK_ATTACH_MS=20000 IVSOCK_ATTACH_MAX_MS=20000 \
		shim_run A timeout 60 "$SHIM_TOOL" client "$SHIM_B_IP" "$1" $((1 << 20)) $N \
		2>"$D/cli$2.out" || fail "client $2"
	wait $srv || fail "server $2"
	# The last connection's listener may be gone (the server accepted its
	# N) before a late OPEN is served: then no channel at all.
	acc=$(stat_of "$D/cli$2.out" accelerated_connect)
	[ $((acc + $(stat_of "$D/cli$2.out" fallback_no_listener))) = $N ] && [ "$acc" -ge $((N - 1)) ] ||
		fail "$2: connector did not get its channels"
	[ "$(stat_of "$D/cli$2.out" fallback_attach_timeout)" = 0 ] || fail "$2: waited out the attach timeout"
}

echo "== 1. post 200 ms late, default hold: every connection the late way"
IVSOCK_AGENT_TEST_OPEN_DELAY_US=200000 shim_restart_agent A || fail "restart A"
run 7301 1
[ "$(stat_of "$D/cli1.out" fallback_acceptor_abandoned)" = "$acc" ] || fail "1: connector not told"
[ "$(stat_of "$D/srv1.out" accelerated_accept)" = 0 ] || fail "1: server attached"
[ "$(broker_b late_offers)" = "$acc" ] || fail "1: late offers $(broker_b late_offers), want $acc"
late1=$acc

echo "== 2. post 2 ms late, default hold: every connection held and accelerated"
IVSOCK_AGENT_TEST_OPEN_DELAY_US=2000 shim_restart_agent A || fail "restart A"
run 7302 2
[ "$acc" = $N ] || fail "2: a connection without a channel"
[ "$(stat_of "$D/cli2.out" fallback_acceptor_abandoned)" = 0 ] || fail "2: one went the late way"
[ "$(stat_of "$D/srv2.out" accelerated_accept)" = $N ] || fail "2: held ones not accelerated"
[ "$(stat_of "$D/srv2.out" ring_rx_bytes)" = $((N << 20)) ] || fail "2: held ones not on rings"
[ "$(broker_b late_offers)" = "$late1" ] || fail "2: late offers $(broker_b late_offers)"
# an ACCEPT that comes after the offer (2 ms is short on a busy machine)
# finds it without being held
held=$(broker_b held_accepts)
[ "$held" -ge 1 ] && [ "$held" -le $N ] || fail "2: held accepts $held, want 1..$N"

echo "== 3. post 2 ms late, --accept-hold-us 0: never held"
shim_restart_agent B --accept-hold-us 0 || fail "restart B"
run 7303 3
# each connection either went the late way (its ACCEPT came first: the
# server on TCP, the connector told) or its offer came first (accelerated);
# on a busy machine a few can be the second kind
ab=$(stat_of "$D/cli3.out" fallback_acceptor_abandoned)
[ $((ab + $(stat_of "$D/srv3.out" accelerated_accept))) = "$acc" ] || fail "3: connector not told"
[ "$ab" -ge 1 ] || fail "3: no connection went the late way"
[ "$(broker_b held_accepts)" = 0 ] || fail "3: held"
[ "$(broker_b late_offers)" = "$ab" ] || fail "3: late offers $(broker_b late_offers), want $ab"

echo "== 4. a plain client: never held"
shim_restart_agent B || fail "restart B"
shim_run B timeout 60 "$SHIM_TOOL" server 7304 $N >"$D/srv4.out" 2>&1 &
srv=$!
sleep 0.3
shim_exec A timeout 60 "$SHIM_TOOL" client "$SHIM_B_IP" 7304 $((1 << 20)) $N 2>"$D/cli4.out" ||
	fail "plain client"
wait $srv || fail "server 4"
[ "$(stat_of "$D/srv4.out" fallback_accept_no_offer)" = $N ] || fail "4: server not on TCP"
[ "$(broker_b held_accepts)" = 0 ] || fail "4: a plain client was held"

echo "PASS: shim-late-offer"
