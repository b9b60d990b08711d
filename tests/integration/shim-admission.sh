#!/bin/bash
# SPDX-License-Identifier: MIT
# The agent's admission options and per-uid limits, seen from the shim
# (ivsock-agent(8), docs/broker.md "Limits and admission"). The agent of
# the clients' VM (A) is restarted with each configuration; the server in B
# is a root shim-stream (root is never refused nor limited). Users
# ivs-usera / ivs-userb (preload/tests/users-env.sh) and a group ivs-ugrp
# created here (ivs-userb a supplementary member), removed at the end.
#   1. --allow-user ivs-usera: ivs-usera and root are accelerated; ivs-userb
#      is refused by the agent: its connection stays on TCP, byte-exact,
#      counted as fallback_no_agent;
#   2. --allow-group ivs-ugrp: ivs-userb with its supplementary groups
#      (setpriv --init-groups) and ivs-usera with ivs-ugrp as primary group
#      are accelerated; ivs-userb without groups and ivs-usera are refused;
#   3. --max-channels-per-uid 2 (below the default ring share, 50 % of the
#      class's 7 blocks per VM = 3, so the channel limit is the one that
#      bites): ivs-usera holds 5 connections at once: 2 on rings, 3 fall
#      back to TCP (fallback_no_rings: the agent said EDQUOT), every byte of
#      all 5 checked; meanwhile ivs-userb gets 2 accelerated connections;
#      once ivs-usera let go, it is accelerated again.
#
#   ivshim-PID-a 10.78.0.1 ──veth── 10.78.0.2 ivshim-PID-b      ivsockd + 2 agents
#   (clients of ivs-usera, ivs-userb, root; agent restarted with options)
set -eu
cd "$(dirname "$0")/../.."
. preload/tests/shim-env.sh
USERS_TOOL=$SHIM_OB/preload/tests/shim-users
[ -x "$USERS_TOOL" ] || { echo "SKIP: $USERS_TOOL not built"; exit 77; }
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
command -v useradd >/dev/null && command -v groupadd >/dev/null && command -v setpriv >/dev/null ||
	{ echo "SKIP: useradd/groupadd/setpriv missing"; exit 77; }
command -v jq >/dev/null || { echo "SKIP: jq missing"; exit 77; }
. preload/tests/users-env.sh
G=ivs-ugrp
G_CREATED=0
shim_env_up
users_ensure
cleanup() {
	shim_env_down
	[ $G_CREATED = 1 ] && groupdel "$G" 2>/dev/null
	users_cleanup
}
trap cleanup EXIT
if ! getent group "$G" >/dev/null; then
	groupadd --system "$G"
	G_CREATED=1
fi
id -nG "$UB" | tr ' ' '\n' | grep -qx "$G" || gpasswd -a "$UB" "$G" >/dev/null
G_ID=$(getent group "$G" | cut -d: -f3)
chmod 1777 "$SHIM_ENV_DIR"
export IVSOCK_STATS=1
MB=$((4 << 20))
fail() { echo "FAIL: $*"; for f in "$SHIM_ENV_DIR"/*.log "$SHIM_ENV_DIR"/*.out; do echo "== $f"; tail -n 20 "$f"; done; exit 1; }

# restart_agent_a ARGS...: agent A again, with these options
restart_agent_a() {
	shim_restart_agent A "$@" || fail "agent A did not come back with $*"
	n_restart=$shim_restart_agent_n
}
# client_as WHO TAG: one shim-stream client of MB bytes (WHO: root, or
# setpriv arguments), every byte checked
client_as() {
	local who=$1 tag=$2
	if [ "$who" = root ]; then
		shim_run A timeout 60 "$SHIM_TOOL" client "$SHIM_B_IP" "$PORT" $MB 1 \
			2>"$SHIM_ENV_DIR/cli-$tag.out" || fail "client $tag (root)"
	else
		# shellcheck disable=SC2086
		ip netns exec "$SHIM_NS_A" setpriv $who "$SHIM_RUNNER" --lib "$SHIM_LIB" \
			timeout 60 "$SHIM_TOOL" client "$SHIM_B_IP" "$PORT" $MB 1 \
			2>"$SHIM_ENV_DIR/cli-$tag.out" || fail "client $tag ($who): stream not byte-exact"
	fi
}
accelerated() { # TAG
	local f=$SHIM_ENV_DIR/cli-$1.out
	[ "$(stat_sum "$f" accelerated_connect)" = 1 ] || fail "$1: not accelerated: $(cat "$f")"
	[ "$(stat_sum "$f" ring_rx_bytes)" = $MB ] || fail "$1: echo not on the rings"
	no_fallback "$f" || fail "$1: fell back"
}
refused() { # TAG
	local f=$SHIM_ENV_DIR/cli-$1.out
	[ "$(stat_sum "$f" accelerated_connect)" = 0 ] || fail "$1: accelerated although refused"
	[ "$(stat_sum "$f" fallback_no_agent)" = 1 ] || fail "$1: not counted as refused (fallback_no_agent): $(cat "$f")"
	[ "$(stat_sum "$f" ring_rx_bytes)" = 0 ] || fail "$1: bytes on the rings"
}
# server COUNT: a root echo server in B for COUNT connections on a new port
PORT=7700
server() {
	PORT=$((PORT + 1))
	shim_run B timeout 120 "$SHIM_TOOL" server "$PORT" "$1" >"$SHIM_ENV_DIR/srv-$PORT.out" 2>&1 &
	SRV=$!
	wait_out "$SHIM_ENV_DIR/srv-$PORT.out" || fail "server on $PORT did not start"
}
AS_A="--reuid=$UA_ID --regid=$UA_GID --clear-groups"
AS_B="--reuid=$UB_ID --regid=$UB_GID --clear-groups"

echo "== 1. --allow-user $UA"
restart_agent_a --allow-user "$UA"
server 3
client_as "$AS_A" 1a
client_as "$AS_B" 1b
client_as root 1r
wait $SRV || fail "server 1"
accelerated 1a
refused 1b
accelerated 1r
grep -q "refusing pid [0-9]* uid $UB_ID" "$SHIM_ENV_DIR/agent-A$n_restart.log" || fail "agent A did not log the refusal"
echo "ok: $UA and root accelerated, $UB refused and byte-exact on TCP"

echo "== 2. --allow-group $G"
restart_agent_a --allow-group "$G"
server 4
client_as "--reuid=$UB_ID --regid=$UB_GID --init-groups" 2b-sup
client_as "$AS_B" 2b-none
client_as "$AS_A" 2a
client_as "--reuid=$UA_ID --regid=$G_ID --clear-groups" 2a-prim
wait $SRV || fail "server 2"
accelerated 2b-sup
refused 2b-none
refused 2a
accelerated 2a-prim
echo "ok: members of $G (supplementary or primary) accelerated, others refused and byte-exact on TCP"

echo "== 3. --max-channels-per-uid 2: $UA holds 5 connections, $UB still accelerated"
restart_agent_a --max-channels-per-uid 2
server 8
ip netns exec "$SHIM_NS_A" setpriv $AS_A "$SHIM_RUNNER" --lib "$SHIM_LIB" timeout 120 "$USERS_TOOL" hold \
	"$SHIM_B_IP" "$PORT" 5 $MB "$SHIM_ENV_DIR/ready3" "$SHIM_ENV_DIR/go3" >"$SHIM_ENV_DIR/cli-3a.out" 2>&1 &
hold=$!
wait_file "$SHIM_ENV_DIR/ready3" || fail "the holding client is not ready"
# (its connections beyond the limit are on TCP: listed as TCP entries)
mine=$(shim_exec A "$SHIM_AGENT" --status | jq '[.channels[] | select(.state != "tcp")] | length')
echo "agent A: $mine channel(s) while $UA holds 5 connections"
[ "$mine" = 2 ] || fail "agent A holds $mine channels for uid $UA_ID, not 2"
client_as "$AS_B" 3b1
client_as "$AS_B" 3b2
accelerated 3b1
accelerated 3b2
touch "$SHIM_ENV_DIR/go3"
wait $hold || fail "the holding client: a stream was not byte-exact"
f=$SHIM_ENV_DIR/cli-3a.out
grep -q "shim-users: hold ok 5 $MB" "$f" || fail "holding client not ok"
[ "$(stat_sum "$f" accelerated_connect)" = 2 ] || fail "uid $UA_ID got $(stat_sum "$f" accelerated_connect) accelerated connections, not 2"
[ "$(stat_sum "$f" fallback_no_rings)" = 3 ] || fail "the 3 connections over the limit were not counted as fallback_no_rings: $(cat "$f")"
[ "$(stat_sum "$f" ring_tx_bytes)" = $((2 * MB + 2)) ] || fail "uid $UA_ID: ring tx $(stat_sum "$f" ring_tx_bytes)"
[ "$(stat_sum "$f" ring_rx_bytes)" = $((2 * MB + 2)) ] || fail "uid $UA_ID: ring rx $(stat_sum "$f" ring_rx_bytes)"
client_as "$AS_A" 3a-after
accelerated 3a-after
wait $SRV || fail "server 3"
echo "ok: 2 of $UA's 5 on rings, 3 on TCP (all byte-exact), $UB accelerated meanwhile, $UA again after"

no_channels_left || fail "channels leaked: $(shim_ctl channels --json)"
echo "shim-admission: all passed"
