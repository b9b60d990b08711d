#!/bin/bash
# SPDX-License-Identifier: MIT
# libivsock.so basics: a checksummed 64 MiB echo stream between two "VMs"
# over the rings (proved by the shim's counters and by ivsockctl's channel
# byte counters), the same over plain TCP, loopback inside one VM,
# accept-then-fork, and an accelerated socket inherited across exec.
#
#   ivshim-PID-a 10.78.0.1 ──veth── 10.78.0.2 ivshim-PID-b      ivsockd + 2 agents
#   (shim-stream client)           (shim-stream server)
set -eu
cd "$(dirname "$0")/../.."
. preload/tests/shim-env.sh
shim_env_up
MB64=$((64 << 20))
export IVSOCK_STATS=1
stat_of() { grep -o "$2=[0-9]*" "$1" | tail -n 1 | cut -d= -f2; }
fail() { echo "FAIL: $*"; for f in "$SHIM_ENV_DIR"/*.log "$SHIM_ENV_DIR"/*.out; do echo "== $f"; tail -n 20 "$f"; done; exit 1; }

echo "== 64 MiB over the rings"
shim_run B timeout 120 "$SHIM_TOOL" server 7101 1 >"$SHIM_ENV_DIR/srv1.out" 2>&1 &
srv=$!
sleep 0.3
shim_run A timeout 120 "$SHIM_TOOL" client "$SHIM_B_IP" 7101 $MB64 1 2>"$SHIM_ENV_DIR/cli1.out" ||
	fail "stream over the shim"
wait $srv || fail "server"
[ "$(stat_of "$SHIM_ENV_DIR/cli1.out" accelerated_connect)" = 1 ] || fail "client not accelerated"
[ "$(stat_of "$SHIM_ENV_DIR/cli1.out" ring_tx_bytes)" = $MB64 ] || fail "client tx not on rings"
[ "$(stat_of "$SHIM_ENV_DIR/cli1.out" ring_rx_bytes)" = $MB64 ] || fail "client rx not on rings"
[ "$(stat_of "$SHIM_ENV_DIR/srv1.out" accelerated_accept)" = 1 ] || fail "server not accelerated"

echo "== ivsockctl channels shows the traffic while it flows"
shim_run B timeout 120 "$SHIM_TOOL" server 7102 1 >"$SHIM_ENV_DIR/srv2.out" 2>&1 &
srv=$!
sleep 0.3
shim_run A timeout 120 "$SHIM_TOOL" client "$SHIM_B_IP" 7102 $((2048 << 20)) 1 2>"$SHIM_ENV_DIR/cli2.out" &
cli=$!
seen=0
for _ in $(seq 200); do
	j=$(shim_ctl channels --json 2>/dev/null || true)
	if echo "$j" | grep -Eq '"(tx|rx)_bytes": *[1-9]'; then seen=1; break; fi
	sleep 0.05
done
wait $cli || fail "long stream"
wait $srv || fail "server 2"
[ $seen = 1 ] || fail "ivsockctl channels never showed ring bytes: $j"
echo "$j" | head -n 30

echo "== the same over plain TCP (IVSOCK_DISABLE=1)"
IVSOCK_DISABLE=1 shim_run B timeout 120 "$SHIM_TOOL" server 7103 1 >"$SHIM_ENV_DIR/srv3.out" 2>&1 &
srv=$!
sleep 0.3
IVSOCK_DISABLE=1 shim_run A timeout 120 "$SHIM_TOOL" client "$SHIM_B_IP" 7103 $MB64 1 \
	2>"$SHIM_ENV_DIR/cli3.out" || fail "plain TCP stream"
wait $srv || fail "server 3"
[ "$(stat_of "$SHIM_ENV_DIR/cli3.out" ring_tx_bytes)" = 0 ] || fail "disabled shim used rings"

echo "== loopback inside one VM"
shim_run A timeout 60 "$SHIM_TOOL" server 7104 1 >"$SHIM_ENV_DIR/srv4.out" 2>&1 &
srv=$!
sleep 0.3
shim_run A timeout 60 "$SHIM_TOOL" client 127.0.0.1 7104 $((8 << 20)) 1 2>"$SHIM_ENV_DIR/cli4.out" ||
	fail "loopback stream"
wait $srv || fail "server 4"
[ "$(stat_of "$SHIM_ENV_DIR/cli4.out" accelerated_connect)" = 1 ] || fail "loopback not accelerated"

echo "== accept-then-fork server (parent closes, child serves), 4 connections"
shim_run B timeout 60 "$SHIM_TOOL" --fork server 7105 4 >"$SHIM_ENV_DIR/srv5.out" 2>&1 &
srv=$!
sleep 0.3
shim_run A timeout 60 "$SHIM_TOOL" client "$SHIM_B_IP" 7105 $((4 << 20)) 4 2>"$SHIM_ENV_DIR/cli5.out" ||
	fail "fork server"
wait $srv || true
[ "$(stat_of "$SHIM_ENV_DIR/cli5.out" accelerated_connect)" = 4 ] || fail "fork: not accelerated"
[ "$(stat_of "$SHIM_ENV_DIR/cli5.out" ring_rx_bytes)" = $((16 << 20)) ] || fail "fork: rx not on rings"

echo "== sockets inherited across exec: bash writes, exec'd head(1) reads the ring"
# The server speaks first: bash reads the banner through the shim, so the
# connection is attached before bash forks and execs head(1).
shim_run B timeout 60 "$SHIM_TOOL" --speak-first server 7106 1 >"$SHIM_ENV_DIR/srv6.out" 2>&1 &
srv=$!
sleep 0.3
out=$(shim_run A timeout 30 bash -c "exec 3<>/dev/tcp/$SHIM_B_IP/7106; read -r banner <&3;
	printf hello >&3; head -c 5 <&3; echo; printf world >&3; head -c 5 <&3; echo; exec 3>&-" 2>/dev/null)
wait $srv || fail "exec server"
[ "$out" = "$(printf 'hello\nworld')" ] || fail "exec inheritance: got '$out'"
grep -q "accelerated_accept=1" "$SHIM_ENV_DIR/srv6.out" || fail "exec case not accelerated"

echo "== splice(2) from a pipe into an accelerated socket and back"
shim_run B timeout 60 "$SHIM_TOOL" server 7107 1 >"$SHIM_ENV_DIR/srv7.out" 2>&1 &
srv=$!
sleep 0.3
rc=0
shim_run A timeout 60 python3 preload/tests/shim_splice.py "$SHIM_B_IP" 7107 2>"$SHIM_ENV_DIR/cli7.out" || rc=$?
wait $srv || true
[ $rc = 0 ] || [ $rc = 77 ] || fail "splice"
[ $rc = 77 ] || [ "$(stat_of "$SHIM_ENV_DIR/cli7.out" ring_rx_bytes)" = $((1 << 20)) ] || fail "splice not on rings"

echo "== no channel left behind"
for _ in $(seq 50); do
	shim_ctl channels --json | grep -q '"channels": *\[ *\]' && break
	sleep 0.1
done
shim_ctl channels --json | tr -d ' \n' | grep -q '"channels":\[\]' || fail "channels leaked: $(shim_ctl channels --json)"
echo PASS
