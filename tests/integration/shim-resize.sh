#!/bin/bash
# SPDX-License-Identifier: MIT
# Ring -> ring (docs/switch.md): `ivsockctl channel promote ID --size N`
# moves a live connection to a ring of another class (both directions to
# TCP at a byte offset, the channel released, a new one of that size at
# once). Unmodified programs whose connection is moved every 100 ms between
# 32 KiB and 1 MiB rings: a checksummed echo stream, netperf TCP_STREAM and
# TCP_RR, iperf3 -P 4, and every API family of switch-api; they complete,
# every byte checked where the program checks, and report sane figures. Also: the next larger class by default,
# refusals (too large, not root, not a channel).
#
#   ivshim-PID-a 10.78.0.1 ──veth── 10.78.0.2 ivshim-PID-b      ivsockd + 2 agents
set -eu
cd "$(dirname "$0")/../.."
. preload/tests/shim-env.sh
SHIM_REGION=128M
SHIM_DOMAIN_OPTS="max_vms=2,classes=32K:20+128K:30+1M:40,ring=128K"
shim_env_up >/dev/null
export IVSOCK_STATS=1
D=$SHIM_ENV_DIR
stat_of() { grep -o "$2=[0-9]*" "$1" | tail -n 1 | cut -d= -f2; }
fail() {
	echo "FAIL: $*"
	for f in "$D"/*.out "$D"/*.err "$D"/ivsockd.log; do [ -s "$f" ] || continue; echo "== $f"; tail -n 5 "$f"; done
	exit 1
}
chan_of() { # PORT [SIZE]: a connected channel to PORT (of that ring size)
	shim_ctl channels --json | jq -r --argjson p "$1" --argjson z "${2:-0}" \
		'[.channels[] | select(.tuple.dport == $p and .state == "connected" and
		  ($z == 0 or .ring_size == $z))][0].index // empty'
}
# bounce PORT PID [MAX]: while PID lives (and fewer than MAX moves were
# made), move a connected channel to PORT to the other size every 100 ms;
# prints how many moves were made
bounce() {
	local n=0 c size=32768
	while kill -0 "$2" 2>/dev/null && [ "$n" -lt "${3:-1000000}" ]; do
		c=$(chan_of "$1")
		if [ -n "$c" ] && shim_ctl channel promote "$c" --size $size >/dev/null 2>&1; then
			n=$((n + 1))
			size=$((size == 32768 ? 1048576 : 32768))
		fi
		sleep 0.1
	done
	echo "$n"
}

echo "== a checksummed echo stream moved between ring sizes every 100 ms"
shim_run B timeout 90 "$SHIM_TOOL" server 7801 1 >"$D/s-srv.out" 2>&1 &
srv=$!
sleep 0.3
shim_run A timeout 90 "$SHIM_TOOL" --chunk 16384 --pace-us 200 --linger-ms 3000 client "$SHIM_B_IP" 7801 \
	$((96 << 20)) 1 >"$D/s-cli.out" 2>&1 &
cli=$!
for _ in $(seq 100); do [ -n "$(chan_of 7801)" ] && break; sleep 0.05; done
cpid=$(pgrep -f "shim-stream --chunk 16384 --pace-us 200 --linger-ms 3000 client $SHIM_B_IP 7801" | head -n 1)
# 6 moves, then the stream ends on its last ring and lingers
moves=$(bounce 7801 "$cpid" 6)
paths=$(linger_paths 7801 "$D/s-cli.out" 60)
wait $cli || fail "stream: client (bytes lost, duplicated or reordered?)"
wait $srv || fail "stream: server"
echo "moves: $moves; client: $(stat_of "$D/s-cli.out" switch_resize) resizes, $(stat_of "$D/s-cli.out" promoted) promotions"
[ "$moves" -ge 5 ] || fail "stream: only $moves moves"
# Per-path bytes over every ring the connection had (docs/switch.md): each
# end's ring part is what its shim counted on rings, its TCP part the rest
echo "ivsockctl channels, per path, after the moves: $paths"
[ -n "$paths" ] && [ "$paths" != null ] || fail "per-path bytes: the finished connection was not listed"
echo "$paths" | jq -e --argjson n $((96 << 20)) --argjson r "$(stat_of "$D/s-cli.out" ring_tx_bytes)" \
	--argjson sr "$(stat_of "$D/s-srv.out" ring_tx_bytes)" '
	.[0].ring.tx_bytes == $r and .[0].tcp.tx_bytes == $n - $r and
	.[1].ring.tx_bytes == $sr and .[1].tcp.tx_bytes == $n - $sr and
	.[0].ring.rx_bytes == .[1].ring.tx_bytes and .[1].ring.rx_bytes == .[0].ring.tx_bytes' >/dev/null ||
	fail "per-path bytes over $moves moves do not add up to 96 MiB each way"
[ "$(stat_of "$D/s-cli.out" promoted)" -ge 3 ] || fail "stream: fewer than 3 promotions"
[ "$(stat_of "$D/s-srv.out" promoted)" -ge 3 ] || fail "stream: server promoted fewer than 3 times"

echo "== hundreds of moves of one echo stream: 32K -> 128K -> 1M -> 32K ... as fast as they go"
# as bounce, without the pause and through all three classes: each move is
# both directions ring -> TCP, then TCP -> the new ring, at whatever bytes
# it finds them
cycle() {
	local n=0 c i=0 sizes=(131072 1048576 32768)
	while kill -0 "$2" 2>/dev/null; do
		c=$(chan_of "$1")
		if [ -n "$c" ] && shim_ctl channel promote "$c" --size "${sizes[i]}" >/dev/null 2>&1; then
			n=$((n + 1))
			i=$(((i + 1) % 3))
		fi
	done
	echo "$n"
}
shim_run B timeout 120 "$SHIM_TOOL" server 7802 1 >"$D/h-srv.out" 2>&1 &
srv=$!
sleep 0.3
IVSOCK_RING_SIZE=32768 shim_run A timeout 120 "$SHIM_TOOL" --chunk 4096 --pace-us 200 client "$SHIM_B_IP" 7802 \
	$((128 << 20)) 1 >"$D/h-cli.out" 2>&1 &
cli=$!
for _ in $(seq 100); do [ -n "$(chan_of 7802)" ] && break; sleep 0.05; done
cpid=$(pgrep -f "shim-stream --chunk 4096 --pace-us 200 client $SHIM_B_IP 7802" | head -n 1)
moves=$(cycle 7802 "$cpid")
wait $cli || fail "hundreds: client (bytes lost, duplicated or reordered?)"
wait $srv || fail "hundreds: server"
echo "moves: $moves; client: $(stat_of "$D/h-cli.out" switch_tx_tcp) tx and $(stat_of "$D/h-cli.out" switch_rx_tcp) rx switches to TCP, $(stat_of "$D/h-cli.out" promoted) promotions; every byte checked"
[ "$moves" -ge 200 ] || fail "hundreds: only $moves moves"
[ "$(stat_of "$D/h-cli.out" promoted)" -ge 200 ] || fail "hundreds: fewer than 200 promotions"

# Every API family of switch-api (the server echoes, the client checks
# every byte; writes of 1..20011 bytes) while its connection is moved
# 32K -> 128K -> 1M -> 32K ... as fast as the requests go (cycle, above):
# ring -> TCP -> ring, over and over, at whatever byte each move finds,
# more than a hundred times per family.
API=$SHIM_OB/preload/tests/switch-api
port=7840
for mode in poll select epoll-lt epoll-et epoll-oneshot epoll-et-once waitall peek fionread; do
	port=$((port + 1))
	shim_run B timeout 90 "$API" server $port $mode >"$D/a-srv-$port.out" 2>&1 &
	srv=$!
	sleep 0.3
	shim_run A timeout 90 "$API" client "$SHIM_B_IP" $port $((128 << 20)) $mode 300 \
		>"$D/a-cli-$port.out" 2>&1 &
	cli=$!
	for _ in $(seq 100); do [ -n "$(chan_of $port)" ] && break; sleep 0.05; done
	apid=$(pgrep -f "switch-api client $SHIM_B_IP $port " | head -n 1)
	moves=$(cycle $port "$apid")
	wait $cli || fail "$mode: client (bytes lost, duplicated or reordered?)"
	wait $srv || fail "$mode: server"
	grep -q "^OK $mode bytes=$((128 << 20))" "$D/a-cli-$port.out" || fail "$mode: no OK line"
	echo "== API $mode: $moves moves, $(stat_of "$D/a-cli-$port.out" promoted) promotions, every byte checked"
	[ "$moves" -ge 100 ] || fail "$mode: only $moves moves"
done

if command -v netperf >/dev/null && command -v netserver >/dev/null; then
	shim_run B netserver -D -p 12865 >"$D/netserver.out" 2>&1 &
	sleep 0.5
	for t in TCP_STREAM TCP_RR; do
		echo "== netperf $t, its data connection moved every 100 ms"
		shim_run A timeout 60 netperf -H "$SHIM_B_IP" -p 12865 -l 4 -t $t -P 0 -- -P ,7811 \
			>"$D/np-$t.out" 2>"$D/np-$t.err" &
		np=$!
		for _ in $(seq 100); do [ -n "$(chan_of 7811)" ] && break; sleep 0.05; done
		npid=$(pgrep -f "netperf -H $SHIM_B_IP -p 12865 -l 4 -t $t" | head -n 1)
		moves=$(bounce 7811 "$npid")
		wait $np || fail "netperf $t failed: $(cat "$D/np-$t.err")"
		# the figure: the last field of the result line (the one with a
		# decimal point; TCP_RR prints the remote's buffer sizes after)
		fig=$(awk '$NF ~ /^[0-9]+\.[0-9]+$/ { v = $NF } END { print v + 0 }' "$D/np-$t.out")
		echo "netperf $t: $fig ($moves moves; $(stat_of "$D/np-$t.err" promoted) promotions)"
		[ "$moves" -ge 5 ] || fail "netperf $t: only $moves moves"
		awk -v f="$fig" 'BEGIN { exit !(f > 0) }' || fail "netperf $t: no figure"
		[ "$(stat_of "$D/np-$t.err" promoted)" -ge 3 ] || fail "netperf $t: fewer than 3 promotions"
	done
	pkill -f "netserver -D -p 12865" || true
else
	echo "SKIP netperf (not installed: make deps)"
fi

if command -v iperf3 >/dev/null; then
	echo "== iperf3 -P 4, one of its connections moved every 100 ms"
	shim_run B timeout 60 iperf3 -s -1 -p 7821 >"$D/ip-srv.out" 2>&1 &
	sleep 0.5
	shim_run A timeout 60 iperf3 -c "$SHIM_B_IP" -p 7821 -P 4 -t 4 -J >"$D/ip-cli.out" 2>"$D/ip-cli.err" &
	ip=$!
	for _ in $(seq 100); do [ -n "$(chan_of 7821)" ] && break; sleep 0.05; done
	ipid=$(pgrep -f "iperf3 -c $SHIM_B_IP -p 7821" | head -n 1)
	moves=$(bounce 7821 "$ipid")
	wait $ip || fail "iperf3 client failed"
	jq -e '.error == null and .end.sum_received.bytes > 0' "$D/ip-cli.out" >/dev/null ||
		fail "iperf3: error or nothing received"
	echo "iperf3: $(jq -r '.end.sum_received.bits_per_second / 1e9 | floor' "$D/ip-cli.out") Gbit/s ($moves moves; $(stat_of "$D/ip-cli.err" promoted) promotions)"
	[ "$moves" -ge 5 ] || fail "iperf3: only $moves moves"
else
	echo "SKIP iperf3 (not installed: make deps)"
fi

echo "== IVSOCK_RING_GROW=1: a heavy stream moves up the classes, a light one stays"
# either end may be the one that finds its ring full (the echo writes as
# much as the client): the moves of both are counted
for k in heavy light; do
	IVSOCK_RING_GROW=1 shim_run B timeout 60 "$SHIM_TOOL" server $([ $k = heavy ] && echo 7851 || echo 7852) 1 \
		>"$D/g-$k-srv.out" 2>&1 &
	eval "srv_$k=\$!"
done
sleep 0.3
IVSOCK_RING_GROW=1 IVSOCK_RING_SIZE=32768 shim_run A timeout 60 "$SHIM_TOOL" --chunk 65536 client \
	"$SHIM_B_IP" 7851 $((256 << 20)) 1 >"$D/g-heavy-cli.out" 2>&1 || fail "grow: heavy client (bytes lost?)"
IVSOCK_RING_GROW=1 IVSOCK_RING_SIZE=32768 shim_run A timeout 60 "$SHIM_TOOL" --chunk 4096 --pace-us 2000 \
	client "$SHIM_B_IP" 7852 $((2 << 20)) 1 >"$D/g-light-cli.out" 2>&1 || fail "grow: light client"
# shellcheck disable=SC2154
wait "$srv_heavy" || fail "grow: heavy server"
# shellcheck disable=SC2154
wait "$srv_light" || fail "grow: light server"
grows() { echo $(( $(stat_of "$D/g-$1-cli.out" ring_grow) + $(stat_of "$D/g-$1-srv.out" ring_grow) )); }
echo "heavy: $(grows heavy) moves up, $(stat_of "$D/g-heavy-cli.out" promoted) promotions; light: $(grows light) moves"
[ "$(grows heavy)" -ge 1 ] || fail "grow: the heavy stream stayed on its ring"
[ "$(stat_of "$D/g-heavy-cli.out" promoted)" -ge 1 ] || fail "grow: no promotion after the move"
[ "$(stat_of "$D/g-heavy-cli.out" promoted)" -le 2 ] || fail "grow: more moves than classes above 32K"
[ "$(grows light)" = 0 ] || fail "grow: a light stream was moved"

echo "== the next larger class by default; refusals"
shim_run B timeout 60 "$SHIM_TOOL" server 7831 1 >"$D/r-srv.out" 2>&1 &
srv=$!
sleep 0.3
IVSOCK_RING_SIZE=32768 shim_run A timeout 60 "$SHIM_TOOL" --chunk 16384 --pace-us 500 client "$SHIM_B_IP" 7831 \
	$((32 << 20)) 1 >"$D/r-cli.out" 2>&1 &
cli=$!
c=
for _ in $(seq 100); do c=$(chan_of 7831 32768); [ -n "$c" ] && break; sleep 0.05; done
[ -n "$c" ] || fail "default: no 32K channel"
shim_ctl channel promote "$c" >/dev/null || fail "default: promote refused"
for _ in $(seq 100); do [ -n "$(chan_of 7831 131072)" ] && break; sleep 0.05; done
[ -n "$(chan_of 7831 131072)" ] || fail "default: not moved to the next class (128K)"
c=$(chan_of 7831)
out=$(shim_ctl channel promote "$c" --size 4M 2>&1) && fail "4M: accepted"
echo "$out" | grep -q "no ring class that large" || fail "4M: unclear error: $out"
out=$(shim_ctl channel promote 99999 2>&1) && fail "no channel: accepted"
out=$(shim_ctl channel promote "$c" --size 12x 2>&1) && fail "bad size: accepted"
echo "$out" | grep -q "size" || fail "bad size: unclear error: $out"
out=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$SHIM_IVSOCKCTL" -s "$SHIM_ENV_DIR/ctl.sock" \
	channel promote "$c" 2>&1) && fail "an unprivileged user moved a channel"
wait $cli || fail "default: client (bytes lost?)"
wait $srv || fail "default: server"
echo PASS
