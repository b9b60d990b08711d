#!/bin/bash
# SPDX-License-Identifier: MIT
# A hostile, unprivileged client of the broker (tests/tools/broker-hostile)
# against real agents while another user's accelerated connection is live
# (the shim's two-"VM" set-up, preload/tests/shim-env.sh):
#   - uid 4001 streams 4 GiB from VM A to VM B through the shim (checked
#     byte by byte by shim-stream, on the rings by its counters);
#   - uid 4002 in VM A, then in VM B, finds that connection in the read-only tables and
#     CLOSEs / ABANDONs / ATTACHes it without and with a socket of its own
#     (refused: -EPERM, the channel does not move), with stale generations
#     (-ESTALE); ACCEPTs with sockets that are not the accepted one and
#     OPENs with wrong sockets and destinations (errors, nothing claimed);
#     the victim's stream completes byte-exact on the rings;
#   - a connection of uid 4001 pending (its server accepts after 3 s): uid
#     4002 ACCEPTs with every socket it has and ABANDONs / ATTACHes /
#     CLOSEs it: refused, the offer stays, the connection is accelerated;
#   - uid 4002 sends requests before HELLO, extra fds, unknown types,
#     wrong payload sizes: refused or disconnected, the agent's fd count is
#     the same afterwards;
#   - uid 4002 floods 10000 OPENs: at most --max-channels-per-uid succeed,
#     the rest get -EDQUOT; meanwhile uid 4003 is still accelerated, the
#     agent answers --status throughout; once the flooder exits every block
#     it claimed is free (the agent's ring_pool), no channel is left, and
#     the idle agent does not spin (CPU ticks) nor hold more fds;
#   - uid 4002 TRACKs (connections on TCP as TCP entries) with wrong
#     sockets (refused, nothing recorded), CLOSEs another client's entry
#     (it stays), and records fresh connections until the per-uid cap.
#
#   ivshim-PID-a 10.78.0.1 ──veth── 10.78.0.2 ivshim-PID-b   ivsockd + 2 agents
set -eu
cd "$(dirname "$0")/../.."
MAXCH=6
export SHIM_AGENT_OPTS="--max-channels-per-uid $MAXCH"
. preload/tests/shim-env.sh
HOSTILE=$SHIM_OB/tests/tools/broker-hostile
[ -x "$HOSTILE" ] || { echo "SKIP: $HOSTILE not built"; exit 77; }
command -v setpriv >/dev/null || { echo "SKIP: setpriv missing"; exit 77; }
command -v jq >/dev/null || { echo "SKIP: jq missing"; exit 77; }
shim_env_up
export IVSOCK_STATS=1
D=$SHIM_ENV_DIR
chmod 0755 "$D"
AGENT_A=$SHIM_AGENT_PID_A
stat_of() { grep -o "$2=[0-9]*" "$1" | tail -n 1 | cut -d= -f2; }
fail() {
	echo "FAIL: $*"
	for f in "$D"/*.log "$D"/*.out; do [ -f "$f" ] && { echo "== $f"; tail -n 25 "$f"; }; done
	exit 1
}
status_a() { shim_exec A timeout 10 "$SHIM_AGENT" --status; }
fds_a() { ls "/proc/$AGENT_A/fd" | wc -l; }
ticks_a() { awk '{ print $14 + $15 }' "/proc/$AGENT_A/stat"; }
# wait until agent A has no client and its pool is back to $1 blocks
idle_a() {
	local j
	for _ in $(seq 100); do
		j=$(status_a 2>/dev/null) || j=
		if [ -n "$j" ] && [ "$(echo "$j" | jq '.clients | length')" = 0 ] &&
		   [ "$(echo "$j" | jq '.ring_pool.used')" = "$1" ]; then
			return 0
		fi
		sleep 0.1
	done
	echo "$j"
	return 1
}

idle_a 0 || fail "agent A not idle at the start"
fd0=$(fds_a)
echo "== agent A: pid $AGENT_A, $fd0 fds, --max-channels-per-uid $MAXCH [${SECONDS}s]"

echo "== uid 4001 streams 4 GiB A -> B; uid 4002 attacks its channel [${SECONDS}s]"
GIB=$((4 << 30))
shim_run B setpriv --reuid=4001 --regid=4001 --clear-groups timeout 300 "$SHIM_TOOL" server 7201 1 >"$D/vsrv.out" 2>&1 &
vsrv=$!
sleep 0.3
shim_run A setpriv --reuid=4001 --regid=4001 --clear-groups timeout 300 "$SHIM_TOOL" --chunk 4096 client "$SHIM_B_IP" 7201 $GIB 1 \
	2>"$D/vcli.out" &
vcli=$!
# from the connector's VM, then from the acceptor's (same-VM ends: only the
# client id and the socket cookie stand in the way)
rc=0
shim_exec A setpriv --reuid=4002 --regid=4002 --clear-groups timeout 120 "$HOSTILE" victim "$SHIM_A_IP" 7201 >"$D/victim.out" 2>&1 || rc=$?
shim_exec B setpriv --reuid=4002 --regid=4002 --clear-groups timeout 120 "$HOSTILE" victim "$SHIM_B_IP" 7201 >>"$D/victim.out" 2>&1 || rc=$((rc + $?))
cat "$D/victim.out"
victim_done=0
kill -0 $vcli 2>/dev/null || victim_done=1
wait $vcli || fail "the victim's stream failed"
wait $vsrv || fail "the victim's server failed"
[ $rc = 0 ] || fail "hostile victim checks: $rc failed"
[ $victim_done = 0 ] || fail "the victim's stream ended before the attacks were over"
[ "$(stat_of "$D/vcli.out" accelerated_connect)" = 1 ] || fail "victim not accelerated"
# Nothing the attacker does may move the victim off its rings. The one move
# allowed is the victim's own: a writer that finds both rings full and its
# peer not moving for 100 ms goes to TCP (docs/switch.md), which a 2-core
# machine busy with the attacks can cause; then no one else asked for it.
stalled=$(( $(stat_of "$D/vcli.out" switch_stalled) + $(stat_of "$D/vsrv.out" switch_stalled) ))
for side in vcli vsrv; do
	for c in switch_operator switch_resize switch_reclaim reset_revoked reset_peer_gone; do
		[ "$(stat_of "$D/$side.out" $c)" = 0 ] || fail "victim $side: $c is not 0"
	done
done
if [ "$stalled" = 0 ]; then
	[ "$(stat_of "$D/vcli.out" ring_tx_bytes)" = $GIB ] || fail "victim tx not all on the rings"
	[ "$(stat_of "$D/vcli.out" ring_rx_bytes)" = $GIB ] || fail "victim rx not all on the rings"
else
	echo "note: the victim's stream moved itself to TCP $stalled time(s) (both rings full, peer not scheduled for 100 ms)"
fi
[ "$(stat_of "$D/vsrv.out" accelerated_accept)" = 1 ] || fail "victim server not accelerated"
idle_a 0 || fail "agent A: something left claimed after the victim run"
[ "$(fds_a)" = "$fd0" ] || fail "agent A holds $(fds_a) fds, was $fd0"

echo "== a pending connection of uid 4001 (its server accepts after 3 s); uid 4002 attacks it [${SECONDS}s]"
shim_run B setpriv --reuid=4001 --regid=4001 --clear-groups timeout 60 "$SHIM_TOOL" --accept-delay 3000 server 7205 1 \
	>"$D/psrv.out" 2>&1 &
psrv=$!
sleep 0.3
IVSOCK_ATTACH_MS=9000 IVSOCK_ATTACH_MAX_MS=10000 shim_run A setpriv --reuid=4001 --regid=4001 --clear-groups timeout 60 \
	"$SHIM_TOOL" client "$SHIM_B_IP" 7205 $((16 << 20)) 1 2>"$D/pcli.out" &
pcli=$!
rc=0
shim_exec A setpriv --reuid=4002 --regid=4002 --clear-groups timeout 30 "$HOSTILE" offer "$SHIM_A_IP" 7205 >"$D/offer.out" 2>&1 || rc=$?
shim_exec B setpriv --reuid=4002 --regid=4002 --clear-groups timeout 30 "$HOSTILE" offer "$SHIM_B_IP" 7205 >>"$D/offer.out" 2>&1 || rc=$((rc + $?))
cat "$D/offer.out"
wait $pcli || fail "the pending victim's stream failed"
wait $psrv || fail "the pending victim's server failed"
[ $rc = 0 ] || fail "hostile offer checks: $rc failed"
[ "$(stat_of "$D/pcli.out" accelerated_connect)" = 1 ] || fail "pending victim not accelerated"
[ "$(stat_of "$D/pcli.out" ring_tx_bytes)" = $((16 << 20)) ] || fail "pending victim not on the rings"
[ "$(stat_of "$D/psrv.out" accelerated_accept)" = 1 ] || fail "pending victim's server not accelerated"
idle_a 0 || fail "agent A: something left claimed after the pending victim"

echo "== protocol abuse by uid 4002 [${SECONDS}s]"
rc=0
shim_exec A setpriv --reuid=4002 --regid=4002 --clear-groups timeout 120 "$HOSTILE" protocol >"$D/protocol.out" 2>&1 || rc=$?
cat "$D/protocol.out"
[ $rc = 0 ] || fail "hostile protocol checks: $rc failed"
idle_a 0 || fail "agent A: something left claimed after the protocol abuse"
[ "$(fds_a)" = "$fd0" ] || fail "agent A holds $(fds_a) fds after the abuse, was $fd0"

echo "== uid 4002 floods 10000 OPENs [${SECONDS}s]"
mkfifo "$D/hold"
shim_exec A setpriv --reuid=4002 --regid=4002 --clear-groups timeout 600 "$HOSTILE" flood "$SHIM_A_IP" 10000 0 <"$D/hold" \
	>"$D/flood.out" 2>&1 &
fl=$!
exec 9>"$D/hold"
# the agent answers --status all along
(
	n=0 bad=0
	while [ ! -f "$D/stop-status" ]; do
		n=$((n + 1))
		status_a >/dev/null 2>&1 || bad=$((bad + 1))
		sleep 0.2
	done
	echo "$n $bad" >"$D/status-count"
) &
st=$!
for _ in $(seq 3000); do grep -q '^flood ' "$D/flood.out" && break; sleep 0.1; done
line=$(grep '^flood ' "$D/flood.out") || fail "the flood did not finish"
echo "$line"
ok=$(echo "$line" | sed 's/.*ok=\([0-9]*\).*/\1/')
edq=$(echo "$line" | sed 's/.*edquot=\([0-9]*\).*/\1/')
oth=$(echo "$line" | sed 's/.*other=\([0-9]*\).*/\1/')
[ "$ok" -ge 1 ] && [ "$ok" -le $MAXCH ] || fail "flood: $ok OPENs succeeded (limit $MAXCH)"
[ "$oth" = 0 ] || fail "flood: $oth OPENs failed otherwise than -EDQUOT"
[ $((ok + edq)) = 10000 ] || fail "flood: ok + edquot != 10000"
used=$(status_a | jq '.ring_pool.used')
echo "   agent A ring_pool.used while held: $used"

echo "== uid 4003 still accelerated while the flooder holds its channels [${SECONDS}s]"
shim_run B setpriv --reuid=4003 --regid=4003 --clear-groups timeout 60 "$SHIM_TOOL" server 7202 1 >"$D/o3srv.out" 2>&1 &
srv=$!
sleep 0.3
shim_run A setpriv --reuid=4003 --regid=4003 --clear-groups timeout 60 "$SHIM_TOOL" client "$SHIM_B_IP" 7202 $((8 << 20)) 1 \
	2>"$D/o3cli.out" || fail "uid 4003 stream"
wait $srv || fail "uid 4003 server"
[ "$(stat_of "$D/o3cli.out" accelerated_connect)" = 1 ] || fail "uid 4003 not accelerated"
echo "== the flooder's own uid falls back to TCP, byte-exact [${SECONDS}s]"
shim_run B setpriv --reuid=4003 --regid=4003 --clear-groups timeout 60 "$SHIM_TOOL" server 7203 1 >"$D/o2srv.out" 2>&1 &
srv=$!
sleep 0.3
shim_run A setpriv --reuid=4002 --regid=4002 --clear-groups timeout 60 "$SHIM_TOOL" client "$SHIM_B_IP" 7203 $((8 << 20)) 1 \
	2>"$D/o2cli.out" || fail "uid 4002 stream"
wait $srv || fail "uid 4002 server"
echo "   uid 4002 accelerated_connect=$(stat_of "$D/o2cli.out" accelerated_connect)"

echo "== the flooder exits: everything it claimed is free [${SECONDS}s]"
echo go >&9
exec 9>&-
wait $fl || fail "flooder exit"
touch "$D/stop-status"
wait $st
read -r nst badst <"$D/status-count"
echo "   --status answered $((nst - badst)) of $nst times during the flood"
[ "$badst" = 0 ] || fail "agent A did not answer --status $badst times"
idle_a 0 || fail "agent A: blocks or clients left after the flooder exited"
shim_ctl channels --json | jq -e '.channels | length == 0' >/dev/null ||
	fail "channels left: $(shim_ctl channels --json)"
[ "$(fds_a)" = "$fd0" ] || fail "agent A holds $(fds_a) fds after the flood, was $fd0"
t0=$(ticks_a)
sleep 2
t1=$(ticks_a)
echo "   agent A idle: $((t1 - t0)) CPU ticks in 2 s"
# a spinning agent burns ~2 s worth of ticks (200 at 100 Hz); idle is ~0
[ $((t1 - t0)) -lt 50 ] || fail "agent A spins while idle: $((t1 - t0)) ticks in 2 s"
kill -0 "$AGENT_A" || fail "agent A died"

# A CLOSE of an end already closed (the other end still open) must not hand
# its uid the per-uid quota back (it did: one uid could then take every
# block of a class and the next uid fell back to TCP).
echo "== uid 4002: repeated CLOSE of its own closed end, then 50 OPENs (default class) [${SECONDS}s]"
rm -f "$D/hold"
mkfifo "$D/hold"
shim_exec A setpriv --reuid=4002 --regid=4002 --clear-groups timeout 600 "$HOSTILE" overcommit "$SHIM_A_IP" 50 -1 \
	<"$D/hold" >"$D/overcommit.out" 2>&1 &
fl=$!
exec 9>"$D/hold"
for _ in $(seq 600); do grep -q '^overcommit ' "$D/overcommit.out" && break; sleep 0.1; done
line=$(grep '^overcommit ' "$D/overcommit.out") || fail "overcommit did not finish"
echo "$line"
ok=$(echo "$line" | sed 's/.*ok=\([0-9]*\).*/\1/')
shim_run B setpriv --reuid=4003 --regid=4003 --clear-groups timeout 60 "$SHIM_TOOL" server 7204 1 >"$D/o4srv.out" 2>&1 &
srv=$!
sleep 0.3
shim_run A setpriv --reuid=4003 --regid=4003 --clear-groups timeout 60 "$SHIM_TOOL" client "$SHIM_B_IP" 7204 $((8 << 20)) 1 \
	2>"$D/o4cli.out" || fail "uid 4003 stream during overcommit"
wait $srv || fail "uid 4003 server during overcommit"
acc4003=$(stat_of "$D/o4cli.out" accelerated_connect)
echo go >&9
exec 9>&-
wait $fl || fail "overcommit exit"
idle_a 0 || fail "agent A: blocks or clients left after overcommit"
[ "$(fds_a)" = "$fd0" ] || fail "agent A holds $(fds_a) fds after overcommit, was $fd0"
# one live end (its acceptor end) + ok connector ends
if [ $((ok + 1)) -gt $MAXCH ] || [ "$acc4003" != 1 ]; then
	msg="uid 4002 holds $((ok + 1)) ends (limit $MAXCH); uid 4003 accelerated_connect=$acc4003"
	fail "repeated CLOSE bypasses the per-uid limits: $msg"
else
	echo "   per-uid limit held: uid 4002 $((ok + 1)) ends, uid 4003 accelerated"
fi

# TCP entries (docs/switch.md, "Connections on TCP"): only for a socket's
# own established connection, freed only by its owner (CLOSE, exit), and a
# uid's are capped (an eighth of the channel table).
echo "== uid 4002: TRACK with wrong sockets, another client's CLOSE, the per-uid cap [${SECONDS}s]"
ulimit -n "$(ulimit -Hn)" # the cap below is an eighth of the channel table: thousands of sockets
shim_exec A setpriv --reuid=4002 --regid=4002 --clear-groups timeout 300 "$HOSTILE" track "$SHIM_A_IP" 20000 \
	>"$D/track.out" 2>&1 || fail "track: $(grep -c '^FAIL' "$D/track.out") checks failed"
grep '^FAIL' "$D/track.out" && fail "track"
line=$(grep '^track ' "$D/track.out") || fail "track did not finish"
echo "   $line"
tok=$(echo "$line" | sed 's/.*ok=\([0-9]*\).*/\1/')
tcap=$(echo "$line" | sed 's/.*cap_per_uid=\([0-9]*\).*/\1/')
[ "$tok" = "$tcap" ] || fail "track: $tok entries for one uid, the cap is $tcap"
echo "$line" | grep -q 'capped=[1-9]' || fail "track: the per-uid cap never refused"
idle_a 0 || fail "agent A: clients left after track"
left=$(shim_ctl channels --json | jq '[.channels[] | select(.state == "tcp")] | length')
[ "$left" = 0 ] || fail "track: $left TCP entries left after their owner exited"
[ "$(fds_a)" = "$fd0" ] || fail "agent A holds $(fds_a) fds after track, was $fd0"
echo PASS
