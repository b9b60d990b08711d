#!/bin/bash
# SPDX-License-Identifier: MIT
# Ring -> TCP switching of live connections (docs/switch.md): an operator's
# `ivsockctl channel demote` moves a connection to TCP at a byte offset per
# direction while both directions stream; every byte is checked (the client
# checks the server's echo of its position-addressed pattern), the channel
# is released, the stream goes on over TCP to its end. Also: demote is root
# only, a second demote and a bad index get clear errors.
#
#   ivshim-PID-a 10.78.0.1 ──veth── 10.78.0.2 ivshim-PID-b      ivsockd + 2 agents
set -eu
cd "$(dirname "$0")/../.."
. preload/tests/shim-env.sh
SHIM_REGION=64M
shim_env_up
export IVSOCK_STATS=1
stat_of() { grep -o "$2=[0-9]*" "$1" | tail -n 1 | cut -d= -f2; }
fail() { echo "FAIL: $*"; for f in "$SHIM_ENV_DIR"/*.out "$SHIM_ENV_DIR"/ivsockd.log; do [ -s "$f" ] || continue; echo "== $f"; tail -n 8 "$f"; done; exit 1; }
D=$SHIM_ENV_DIR
# the connected channel to port $1 (index), or nothing
chan_of() {
	shim_ctl channels --json | jq -r --argjson p "$1" \
		'[.channels[] | select(.tuple.dport == $p and .state == "connected")][0].index // empty'
}
wait_chan() {
	for _ in $(seq 200); do
		c=$(chan_of "$1")
		[ -n "$c" ] && { echo "$c"; return 0; }
		sleep 0.02
	done
	return 1
}

run_case() { # name port bytes chunk pace_us [demote_after_s]
	local name=$1 port=$2 bytes=$3 chunk=$4 pace=$5 after=${6:-0.3} c cli srv
	echo "== $name"
	shim_run B timeout 60 "$SHIM_TOOL" server "$port" 1 >"$D/srv-$port.out" 2>&1 &
	srv=$!
	sleep 0.3
	shim_run A timeout 60 "$SHIM_TOOL" --chunk "$chunk" --pace-us "$pace" client "$SHIM_B_IP" "$port" \
		"$bytes" 1 >"$D/cli-$port.out" 2>&1 &
	cli=$!
	c=$(wait_chan "$port") || fail "$name: no channel"
	sleep "$after"
	shim_ctl channel demote "$c" >"$D/demote-$port.out" 2>&1 || fail "$name: demote $c: $(cat "$D/demote-$port.out")"
	wait $cli || fail "$name: client"
	wait $srv || fail "$name: server"
	[ "$(stat_of "$D/cli-$port.out" accelerated_connect)" = 1 ] || fail "$name: not accelerated"
	[ "$(stat_of "$D/cli-$port.out" demoted)" = 1 ] || fail "$name: client not demoted"
	[ "$(stat_of "$D/srv-$port.out" demoted)" = 1 ] || fail "$name: server not demoted"
	[ "$(stat_of "$D/cli-$port.out" switch_tx_tcp)" = 1 ] || fail "$name: client tx not switched once"
	[ "$(stat_of "$D/srv-$port.out" switch_tx_tcp)" = 1 ] || fail "$name: server tx not switched once"
	# both paths carried bytes: the rings before the switch, TCP after
	[ "$(stat_of "$D/cli-$port.out" ring_tx_bytes)" -gt 0 ] || fail "$name: nothing on the ring"
	[ "$(stat_of "$D/cli-$port.out" ring_tx_bytes)" -lt "$bytes" ] || fail "$name: everything on the ring"
	[ -z "$(chan_of "$port")" ] || fail "$name: channel still held after the switch"
}

run_case "echo stream, 16 KiB writes, demoted mid-stream" 7301 $((48 << 20)) 16384 300
run_case "echo stream, 4093-byte writes" 7302 $((4 << 20)) 4093 1000
run_case "demoted almost at once" 7303 $((16 << 20)) 65536 2000 0

# Each API family across the switch: the server echoes and the client reads
# through it (poll, select, epoll LT/ET/ONESHOT on non-blocking sockets,
# blocking MSG_WAITALL, MSG_PEEK then read, FIONREAD-sized reads); writes of
# 1..20011 bytes straddle the switch point.
API=$SHIM_OB/preload/tests/switch-api
port=7320
for mode in poll select epoll-lt epoll-et epoll-oneshot epoll-et-once waitall peek fionread; do
	port=$((port + 1))
	echo "== API across the switch: $mode"
	shim_run B timeout 60 "$API" server $port $mode >"$D/api-srv-$port.out" 2>&1 &
	srv=$!
	sleep 0.3
	shim_run A timeout 60 "$API" client "$SHIM_B_IP" $port $((6 << 20)) $mode 1500 >"$D/api-cli-$port.out" 2>&1 &
	cli=$!
	c=$(wait_chan $port) || fail "$mode: no channel"
	sleep 0.2
	shim_ctl channel demote "$c" >/dev/null || fail "$mode: demote"
	wait $cli || fail "$mode: client (bytes lost, duplicated or reordered?)"
	wait $srv || fail "$mode: server"
	grep -q "^OK $mode bytes=$((6 << 20))" "$D/api-cli-$port.out" || fail "$mode: no OK line"
	[ "$(stat_of "$D/api-cli-$port.out" demoted)" = 1 ] || fail "$mode: client not demoted"
	[ "$(stat_of "$D/api-srv-$port.out" demoted)" = 1 ] || fail "$mode: server not demoted"
	[ "$(stat_of "$D/api-cli-$port.out" ring_rx_bytes)" -gt 0 ] || fail "$mode: nothing on the ring"
done

echo "== server forks per connection (the child is the sole holder once the parent closed)"
shim_run B timeout 60 "$SHIM_TOOL" --fork server 7340 1 >"$D/fork-srv.out" 2>&1 &
srv=$!
sleep 0.3
shim_run A timeout 60 "$SHIM_TOOL" --chunk 8192 --pace-us 500 client "$SHIM_B_IP" 7340 $((8 << 20)) 1 \
	>"$D/fork-cli.out" 2>&1 &
cli=$!
c=$(wait_chan 7340) || fail "fork: no channel"
sleep 0.2
shim_ctl channel demote "$c" >/dev/null || fail "fork: demote"
wait $cli || fail "fork: client"
wait $srv || fail "fork: server"
[ "$(stat_of "$D/fork-cli.out" demoted)" = 1 ] || fail "fork: client not demoted"
[ -z "$(chan_of 7340)" ] || fail "fork: channel still held"

echo "== demotes racing the end of the stream (EOF, shutdown, close)"
for i in $(seq 12); do
	port=$((7350 + i))
	shim_run B timeout 60 "$SHIM_TOOL" server $port 1 >"$D/race-srv-$i.out" 2>&1 &
	srv=$!
	sleep 0.2
	shim_run A timeout 60 "$SHIM_TOOL" --chunk 16384 --pace-us 100 client "$SHIM_B_IP" $port $((1 << 20)) 1 \
		>"$D/race-cli-$i.out" 2>&1 &
	cli=$!
	c=$(wait_chan $port) || c=
	sleep "0.0$((i % 10))"
	# may come too late (the channel is gone): then there is nothing to check
	[ -n "$c" ] && shim_ctl channel demote "$c" >/dev/null 2>&1 || true
	wait $cli || fail "race $i: client"
	wait $srv || fail "race $i: server"
done

echo "== the client is killed right after the demote"
shim_run B timeout 60 "$SHIM_TOOL" server 7370 1 >"$D/kill-srv.out" 2>&1 &
srv=$!
sleep 0.3
shim_run A timeout 60 "$SHIM_TOOL" --chunk 4096 --pace-us 300 client "$SHIM_B_IP" 7370 $((64 << 20)) 1 \
	>"$D/kill-cli.out" 2>&1 &
cli=$!
c=$(wait_chan 7370) || fail "kill: no channel"
sleep 0.2
shim_ctl channel demote "$c" >/dev/null || fail "kill: demote"
pkill -9 -f "shim-stream --chunk 4096 --pace-us 300 client" || true
wait $cli 2>/dev/null || true
# the server ends (EOF or reset, not a hang) and the channel is freed
wait $srv || true
for _ in $(seq 100); do
	[ "$(shim_ctl channels --json | jq '[.channels[] | select(.tuple.dport == 7370)] | length')" = 0 ] && break
	sleep 0.05
done
[ "$(shim_ctl channels --json | jq '[.channels[] | select(.tuple.dport == 7370)] | length')" = 0 ] ||
	fail "kill: channel leaked"

echo "== demote: root only, clear errors"
shim_run B timeout 60 "$SHIM_TOOL" server 7310 1 >"$D/srv-7310.out" 2>&1 &
srv=$!
sleep 0.3
shim_run A timeout 60 "$SHIM_TOOL" --chunk 4096 --pace-us 2000 client "$SHIM_B_IP" 7310 $((2 << 20)) 1 \
	>"$D/cli-7310.out" 2>&1 &
cli=$!
c=$(wait_chan 7310) || fail "no channel"
chmod 0755 "$D"; chmod 0666 "$D/ctl.sock"
if setpriv --reuid=65534 --regid=65534 --clear-groups "$SHIM_IVSOCKCTL" -s "$D/ctl.sock" channel demote "$c" \
	>"$D/nobody.out" 2>&1; then
	fail "nobody demoted a channel"
fi
grep -q "only root" "$D/nobody.out" || fail "no clear error for nobody: $(cat "$D/nobody.out")"
[ "$(chan_of 7310)" = "$c" ] || fail "nobody's request changed the channel"
! shim_ctl channel demote 999999 >"$D/bad.out" 2>&1 || fail "a bad index was accepted"
grep -q "no channel" "$D/bad.out" || fail "no clear error for a bad index: $(cat "$D/bad.out")"
! shim_ctl channel demote "x1" >"$D/bad2.out" 2>&1 || fail "a malformed index was accepted"
shim_ctl channel demote "$c" >/dev/null || fail "root demote"
if shim_ctl channel demote "$c" >"$D/twice.out" 2>&1; then
	# the switch may have completed already (the slot is then free)
	grep -q "both ends" "$D/twice.out" && fail "demoted twice"
fi
wait $cli || fail "client 7310"
wait $srv || fail "server 7310"
[ "$(stat_of "$D/cli-7310.out" demoted)" = 1 ] || fail "7310 not demoted"
echo "PASS"
