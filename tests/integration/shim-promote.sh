#!/bin/bash
# SPDX-License-Identifier: MIT
# TCP -> ring (docs/switch.md, "TCP -> ring"): connections that fell back
# for lack of rings move to rings when rings are free again, mid-stream and
# byte-exact, and a pool of 500 connections opened while the quota was
# used up ends up accelerated, every round of bytes checked. Races: kill -9
# and the end of the stream around a promotion, a forked server; no channel
# is left behind.
#
# The rings are taken by a "holder" (conn-herd connections to another port)
# while the connections under test open; the holder then closes.
#
#   ivshim-PID-a 10.78.0.1 ──veth── 10.78.0.2 ivshim-PID-b      ivsockd + 2 agents
set -eu
cd "$(dirname "$0")/../.."
. preload/tests/shim-env.sh
# per VM: 1K rings x 614 (the default), 128K rings x 2
SHIM_REGION=64M
SHIM_DOMAIN_OPTS="max_vms=2,classes=1K:15+128K:2,ring=1K,reclaim_idle=0,shrink_idle=0"
shim_env_up >/dev/null
export IVSOCK_STATS=1
D=$SHIM_ENV_DIR
HERD=$SHIM_OB/preload/tests/conn-herd
API=$SHIM_OB/preload/tests/switch-api
stat_of() { grep -o "$2=[0-9]*" "$1" | tail -n 1 | cut -d= -f2; }
fail() {
	echo "FAIL: $*"
	for f in "$D"/*.err "$D"/*.out "$D"/ivsockd.log; do [ -s "$f" ] || continue; echo "== $f"; tail -n 4 "$f"; done
	exit 1
}
connected() { # PORT: connected channels to PORT
	shim_ctl channels --json | jq --argjson p "$1" \
		'[.channels[] | select(.tuple.dport == $p and .state == "connected")] | length'
}
on_tcp() { # PORT: connections on TCP to PORT (TCP entries)
	shim_ctl channels --json | jq --argjson p "$1" \
		'[.channels[] | select(.tuple.dport == $p and .state == "tcp")] | length'
}
# hold N [RING]: N held connections to port 7700 (their channels take the
# rings of that class); holder_end closes them
hold() {
	IVSOCK_RING_SIZE=${2:-1024} shim_run B "$HERD" server --bind 0.0.0.0 7700 2>"$D/hold-srv.err" &
	for _ in $(seq 50); do grep -q listening "$D/hold-srv.err" 2>/dev/null && break; sleep 0.1; done
	rm -f "$D/hold.ready"
	IVSOCK_RING_SIZE=${2:-1024} shim_run A "$HERD" client "$SHIM_B_IP" 7700 "$1" \
		--ready "$D/hold.ready" 2>"$D/hold-cli.err" &
	for _ in $(seq 300); do [ -s "$D/hold.ready" ] && break; sleep 0.1; done
	[ -s "$D/hold.ready" ] || fail "holder: round 0 did not complete"
}
holder_end() {
	local c s
	c=$(pgrep -f "conn-herd client $SHIM_B_IP 7700 " | head -n 1)
	s=$(pgrep -f "conn-herd server --bind 0.0.0.0 7700\$" | head -n 1)
	kill -TERM "$c"; while kill -0 "$c" 2>/dev/null; do sleep 0.05; done
	kill -TERM "$s"; while kill -0 "$s" 2>/dev/null; do sleep 0.05; done
	for _ in $(seq 100); do [ "$(connected 7700)" = 0 ] && return 0; sleep 0.05; done
	fail "holder's channels still held"
}
check_promoted() { # NAME CLIENT-FILE SERVER-FILE
	local f
	for f in "$2" "$3"; do
		[ "$(stat_of "$f" promoted)" = 1 ] || fail "$1: $(basename "$f") not promoted once"
		[ "$(stat_of "$f" switch_tx_ring)" = 1 ] || fail "$1: $(basename "$f") tx not moved to the ring"
		[ "$(stat_of "$f" switch_rx_ring)" = 1 ] || fail "$1: $(basename "$f") rx not moved to the ring"
		[ "$(stat_of "$f" ring_rx_bytes)" -gt 0 ] || fail "$1: $(basename "$f") nothing on the ring"
	done
	[ "$(stat_of "$2" fallback_no_rings)" = 1 ] || fail "$1: the client did not start on TCP"
	[ "$(stat_of "$3" fallback_accept_no_offer)" = 1 ] || fail "$1: the server did not start on TCP"
}

echo "== an echo stream that started on TCP moves to the ring mid-stream"
hold 10 131072 # both 128K rings (and the 1K ones are never used for 128K asks)
shim_run B timeout 60 "$SHIM_TOOL" server 7701 1 >"$D/s-srv.out" 2>&1 &
srv=$!
sleep 0.3
IVSOCK_RING_SIZE=131072 shim_run A timeout 60 "$SHIM_TOOL" --chunk 16384 --pace-us 300 --linger-ms 3000 \
	client "$SHIM_B_IP" 7701 $((48 << 20)) 1 >"$D/s-cli.out" 2>&1 &
cli=$!
sleep 0.5
holder_end
# the finished connection as ivsockctl shows it, before the client closes
paths=$(linger_paths 7701 "$D/s-cli.out" 30)
wait $cli || fail "stream: client (bytes lost, duplicated or reordered?)"
wait $srv || fail "stream: server"
check_promoted stream "$D/s-cli.out" "$D/s-srv.out"
ring=$(stat_of "$D/s-cli.out" ring_tx_bytes)
echo "on the ring: $ring of $((48 << 20)) bytes"
[ "$ring" -lt $((48 << 20)) ] || fail "stream: never on TCP"
# Per-path bytes (docs/switch.md): each end's tx on the ring is what its
# shim counted there, its TCP part the rest of the 48 MiB; each end's rx
# is the other's tx.
echo "ivsockctl channels, per path: $paths"
[ -n "$paths" ] && [ "$paths" != null ] || fail "per-path bytes: the connection was not listed"
echo "$paths" | jq -e --argjson n $((48 << 20)) --argjson r "$ring" --argjson sr "$(stat_of "$D/s-srv.out" ring_tx_bytes)" '
	.[0].ring.tx_bytes == $r and .[0].tcp.tx_bytes == $n - $r and
	.[1].ring.tx_bytes == $sr and .[1].tcp.tx_bytes == $n - $sr and
	.[0].ring.rx_bytes == .[1].ring.tx_bytes and .[0].tcp.rx_bytes == .[1].tcp.tx_bytes and
	.[1].ring.rx_bytes == .[0].ring.tx_bytes and .[1].tcp.rx_bytes == .[0].tcp.tx_bytes' >/dev/null ||
	fail "per-path bytes do not add up to 48 MiB each way"

# Each API family across the promotion (switch-api: the server echoes, the
# client checks every byte; writes of 1..20011 bytes straddle the switch).
port=7710
for mode in poll select epoll-lt epoll-et epoll-oneshot epoll-et-once waitall peek fionread; do
	port=$((port + 1))
	echo "== API across the promotion: $mode"
	hold 10 131072
	IVSOCK_RING_SIZE=131072 shim_run B timeout 60 "$API" server $port $mode >"$D/a-srv-$port.out" 2>&1 &
	srv=$!
	sleep 0.3
	IVSOCK_RING_SIZE=131072 shim_run A timeout 60 "$API" client "$SHIM_B_IP" $port $((12 << 20)) $mode 1000 \
		>"$D/a-cli-$port.out" 2>&1 &
	cli=$!
	sleep 0.3
	holder_end
	wait $cli || fail "$mode: client (bytes lost, duplicated or reordered?)"
	wait $srv || fail "$mode: server"
	grep -q "^OK $mode bytes=$((12 << 20))" "$D/a-cli-$port.out" || fail "$mode: no OK line"
	check_promoted "$mode" "$D/a-cli-$port.out" "$D/a-srv-$port.out"
done

echo "== a pool of 500 connections opened while the rings were used up"
hold 700 # every 1K ring of the client's VM (614), 86 more on TCP
IVSOCK_STATS=1 shim_run B "$HERD" server --bind 0.0.0.0 7720 2>"$D/pool-srv.err" &
for _ in $(seq 50); do grep -q listening "$D/pool-srv.err" 2>/dev/null && break; sleep 0.1; done
IVSOCK_STATS=1 shim_run A "$HERD" client "$SHIM_B_IP" 7720 500 --ready "$D/pool.ready" \
	2>"$D/pool-cli.err" &
for _ in $(seq 300); do [ -s "$D/pool.ready" ] && break; sleep 0.1; done
[ "$(cat "$D/pool.ready" 2>/dev/null)" = 0 ] || fail "pool: round 0 did not complete"
[ "$(connected 7720)" = 0 ] || fail "pool: accelerated while the rings were used up"
# each of them listed as a connection on TCP (docs/switch.md, "Connections on TCP")
n=$(on_tcp 7720)
echo "pool: $n of 500 connections listed on TCP"
[ "$n" = 500 ] || fail "pool: $n of 500 connections on TCP listed"
holder_end
pc=$(pgrep -f "conn-herd client $SHIM_B_IP 7720 " | head -n 1)
# rounds of traffic (each connection's calls are where promotion happens),
# until every connection has a channel
round=0 n=0
for _ in $(seq 60); do
	round=$((round + 1))
	kill -USR1 "$pc"
	for _ in $(seq 100); do [ "$(cat "$D/pool.ready")" = "$round" ] && break; sleep 0.05; done
	[ "$(cat "$D/pool.ready")" = "$round" ] || fail "pool: round $round did not complete"
	n=$(connected 7720)
	[ "$n" = 500 ] && break
	sleep 0.2
done
echo "pool: $n of 500 connections on rings after $round rounds"
[ "$n" = 500 ] || fail "pool: only $n of 500 promoted"
[ "$(on_tcp 7720)" = 0 ] || fail "pool: $(on_tcp 7720) TCP entries left beside the channels"
round=$((round + 1))
kill -USR1 "$pc" # one more round, all on rings, checked
for _ in $(seq 100); do [ "$(cat "$D/pool.ready")" = "$round" ] && break; sleep 0.05; done
[ "$(cat "$D/pool.ready")" = "$round" ] || fail "pool: last round did not complete"
kill -TERM "$pc"; while kill -0 "$pc" 2>/dev/null; do sleep 0.05; done
ps_=$(pgrep -f "conn-herd server --bind 0.0.0.0 7720\$" | head -n 1)
kill -TERM "$ps_"; while kill -0 "$ps_" 2>/dev/null; do sleep 0.05; done
grep -q "closed 500 connections" "$D/pool-cli.err" || fail "pool: client did not close cleanly"
[ "$(stat_of "$D/pool-cli.err" promoted)" = 500 ] || fail "pool: client promoted $(stat_of "$D/pool-cli.err" promoted), not 500"
[ "$(stat_of "$D/pool-srv.err" promoted)" = 500 ] || fail "pool: server promoted $(stat_of "$D/pool-srv.err" promoted), not 500"
echo "offers asked for $(stat_of "$D/pool-cli.err" promote_asked), not taken in time $(stat_of "$D/pool-cli.err" promote_untaken)"

# gone PORT: wait until no channel to PORT is left (leak census)
gone() {
	for _ in $(seq 100); do
		[ "$(shim_ctl channels --json | jq --argjson p "$1" '[.channels[] | select(.tuple.dport == $p)] | length')" = 0 ] &&
			return 0
		sleep 0.05
	done
	fail "$2: channel to $1 leaked"
}

echo "== races: kill -9 of the client around its promotion (8 times)"
for i in $(seq 8); do
	port=$((7740 + i))
	hold 10 131072
	shim_run B timeout 60 "$SHIM_TOOL" server $port 1 >"$D/k-srv-$i.out" 2>&1 &
	srv=$!
	sleep 0.2
	IVSOCK_RING_SIZE=131072 shim_run A timeout 60 "$SHIM_TOOL" --chunk 4096 --pace-us 200 client \
		"$SHIM_B_IP" $port $((64 << 20)) 1 >"$D/k-cli-$i.out" 2>&1 &
	cli=$!
	holder_end
	# 0.55 .. 0.9 s after the rings came free: before, during and after
	# the connector's first request (600 ms after its fallback)
	sleep "0.$((55 + 5 * i))"
	pkill -9 -f "shim-stream --chunk 4096 --pace-us 200 client $SHIM_B_IP $port " || true
	wait $cli 2>/dev/null || true
	rc=0
	wait $srv || rc=$?
	[ $rc != 124 ] || fail "kill $i: the server hung" # EOF or reset are fine
	gone $port "kill $i"
done

echo "== races: the stream ends (shutdown, EOF, close) around its promotion (8 times)"
for i in $(seq 8); do
	port=$((7750 + i))
	hold 10 131072
	shim_run B timeout 60 "$SHIM_TOOL" server $port 1 >"$D/e-srv-$i.out" 2>&1 &
	srv=$!
	sleep 0.2
	# 4-18 MiB at ~20 MB/s: ends before, near or after the first request
	IVSOCK_RING_SIZE=131072 shim_run A timeout 60 "$SHIM_TOOL" --chunk 4096 --pace-us 200 client \
		"$SHIM_B_IP" $port $(( (2 + 2 * i) << 20)) 1 >"$D/e-cli-$i.out" 2>&1 &
	cli=$!
	holder_end
	wait $cli || fail "end race $i: client (bytes lost, duplicated or reordered?)"
	wait $srv || fail "end race $i: server"
	gone $port "end race $i"
done

echo "== a server that forks per connection: the shared socket is never promoted, nothing lost"
hold 10 131072
shim_run B timeout 60 "$SHIM_TOOL" --fork server 7760 1 >"$D/f-srv.out" 2>&1 &
srv=$!
sleep 0.3
IVSOCK_RING_SIZE=131072 shim_run A timeout 60 "$SHIM_TOOL" --chunk 16384 --pace-us 300 client "$SHIM_B_IP" 7760 \
	$((32 << 20)) 1 >"$D/f-cli.out" 2>&1 &
cli=$!
sleep 0.3
holder_end
wait $cli || fail "fork: client (bytes lost, duplicated or reordered?)"
wait $srv || fail "fork: server"
[ "$(stat_of "$D/f-cli.out" promoted)" = 0 ] || fail "fork: a socket held by two processes was promoted"
gone 7760 fork

echo "== a promoted connection demoted by the operator stays on TCP"
hold 10 131072
shim_run B timeout 60 "$SHIM_TOOL" server 7730 1 >"$D/d-srv.out" 2>&1 &
srv=$!
sleep 0.3
IVSOCK_RING_SIZE=131072 shim_run A timeout 60 "$SHIM_TOOL" --chunk 16384 --pace-us 300 client \
	"$SHIM_B_IP" 7730 $((48 << 20)) 1 >"$D/d-cli.out" 2>&1 &
cli=$!
sleep 0.3
holder_end
c=
for _ in $(seq 100); do
	c=$(shim_ctl channels --json | jq -r '[.channels[] | select(.tuple.dport == 7730 and .state == "connected")][0].index // empty')
	[ -n "$c" ] && break
	sleep 0.05
done
[ -n "$c" ] || fail "demote: never promoted"
sleep 0.3
shim_ctl channel demote "$c" >/dev/null || fail "demote: refused"
wait $cli || fail "demote: client (bytes lost, duplicated or reordered?)"
wait $srv || fail "demote: server"
[ "$(stat_of "$D/d-cli.out" promoted)" = 1 ] || fail "demote: promoted again after the operator's demote"
[ "$(stat_of "$D/d-cli.out" switch_tx_tcp)" = 1 ] || fail "demote: client tx not switched back once"
[ "$(stat_of "$D/d-srv.out" switch_tx_tcp)" = 1 ] || fail "demote: server tx not switched back once"
gone 7730 demote

echo "== a connection on TCP is listed and promoted by the operator"
# a 64 MiB echo on a 1K ring; demoted by the operator, it stays on TCP
# (listed as such); promoted with --size 128K it is back on a ring of that
# class; every byte checked by shim-stream
shim_run B timeout 60 "$SHIM_TOOL" server 7731 1 >"$D/op-srv.out" 2>&1 &
srv=$!
sleep 0.3
shim_run A timeout 60 "$SHIM_TOOL" --chunk 16384 --pace-us 1000 client \
	"$SHIM_B_IP" 7731 $((64 << 20)) 1 >"$D/op-cli.out" 2>&1 &
cli=$!
c=
for _ in $(seq 100); do
	c=$(shim_ctl channels --json | jq -r '[.channels[] | select(.tuple.dport == 7731 and .state == "connected")][0].index // empty')
	[ -n "$c" ] && break
	sleep 0.05
done
[ -n "$c" ] || fail "operator promote: never on a ring"
sleep 0.3
shim_ctl channel demote "$c" >/dev/null || fail "operator promote: demote refused"
t=
for _ in $(seq 100); do
	t=$(shim_ctl channels --json | jq -r '[.channels[] | select(.tuple.dport == 7731 and .state == "tcp")][0].index // empty')
	[ -n "$t" ] && break
	sleep 0.05
done
[ -n "$t" ] || fail "operator promote: the demoted connection is not listed as on TCP"
row=$(shim_ctl channels | awk -v t="$t" '$2 == t')
echo "on TCP: $row"
echo "$row" | grep -q " tcp  *- .* tcp/tcp " || fail "operator promote: table row: $row"
out=$(shim_ctl channel demote "$t" 2>&1) && fail "operator promote: demote of a connection on TCP accepted"
echo "$out" | grep -q "on TCP already" || fail "operator promote: demote of a TCP entry: $out"
shim_ctl channel promote "$t" --size 128K || fail "operator promote: refused"
n=
for _ in $(seq 200); do
	n=$(shim_ctl channels --json | jq -r '[.channels[] | select(.tuple.dport == 7731 and .state == "connected" and .ring_size == 131072)] | length')
	[ "$n" = 1 ] && break
	sleep 0.05
done
[ "$n" = 1 ] || fail "operator promote: not back on a 128K ring"
[ "$(on_tcp 7731)" = 0 ] || fail "operator promote: the TCP entry stayed beside the channel"
wait $cli || fail "operator promote: client (bytes lost, duplicated or reordered?)"
wait $srv || fail "operator promote: server"
[ "$(stat_of "$D/op-cli.out" promote_operator)" = 1 ] || fail "operator promote: the client did not see the request once"
[ "$(stat_of "$D/op-cli.out" promoted)" = 1 ] || fail "operator promote: client not promoted once"
[ "$(stat_of "$D/op-srv.out" promoted)" = 1 ] || fail "operator promote: server not promoted once"
[ "$(stat_of "$D/op-cli.out" switch_tx_ring)" = 1 ] || fail "operator promote: client tx not back on the ring"
[ "$(shim_ctl domain list --json | jq "[.domains[].tcp_promotes] | add")" -ge 1 ] ||
	fail "operator promote: not counted by ivsockd"
gone 7731 "operator promote"

echo "== a peer whose shim came later: a server that listened before its agent"
# The server listens while agent B is down (its listener is not
# registered); agent B comes back; the client's connection finds no
# shimmed listener and starts on TCP; the server's accept registers its
# listener late; the client sees the registration and the connection moves
# to a ring mid-stream, every byte checked.
kill "$SHIM_AGENT_PID_B"
wait "$SHIM_AGENT_PID_B" 2>/dev/null || true
shim_run B timeout 60 "$SHIM_TOOL" server 7732 1 >"$D/late-srv.out" 2>&1 &
srv=$!
sleep 0.5
shim_restart_agent B ${SHIM_AGENT_OPTS:-} || fail "late: agent B did not come back"
sleep 1.1 # the server's shim asks for its agent again after 1 s
shim_run A timeout 60 "$SHIM_TOOL" --chunk 16384 --pace-us 1000 client \
	"$SHIM_B_IP" 7732 $((64 << 20)) 1 >"$D/late-cli.out" 2>&1 &
cli=$!
wait $cli || fail "late: client (bytes lost, duplicated or reordered?)"
wait $srv || fail "late: server"
[ "$(stat_of "$D/late-cli.out" fallback_no_listener)" = 1 ] || fail "late: the client did not start on TCP for lack of a listener"
[ "$(stat_of "$D/late-srv.out" listeners_registered)" = 1 ] || fail "late: the server's listener was not registered at its accept"
[ "$(stat_of "$D/late-cli.out" promoted)" = 1 ] || fail "late: client not promoted"
[ "$(stat_of "$D/late-srv.out" promoted)" = 1 ] || fail "late: server not promoted"
[ "$(stat_of "$D/late-cli.out" ring_tx_bytes)" -gt 0 ] || fail "late: nothing on the ring"
echo "late: $(stat_of "$D/late-cli.out" ring_tx_bytes) of $((64 << 20)) bytes on the ring"
gone 7732 late
for f in "$D"/e-cli-*.out; do printf "%s " "$(stat_of "$f" promoted)"; done; echo "(end races: promotions per run)"
echo PASS
