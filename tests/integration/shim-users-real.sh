#!/bin/bash
# SPDX-License-Identifier: MIT
# Real, unmodified programs that run as unprivileged users are accelerated
# (issue 9: every local user is served by default), byte-exact (sha256 of
# 16 MiB each way per connection), proven by the shim's counters
# (IVSOCK_STATS=1). Users ivs-usera / ivs-userb (preload/tests/users-env.sh).
#   1. socat TCP-LISTEN:...,fork,su=ivs-usera PIPE started as root: the
#      per-connection child drops to ivs-usera after accept (seen in /proc
#      while a connection is held) and echoes; the client is socat run as
#      ivs-userb from exec; 3 connections;
#   2. socat listening as ivs-userb from exec (fork per connection, PIPE),
#      socat clients as ivs-usera; 3 connections;
#   3. python3 -m http.server run as ivs-usera from exec, curl as ivs-userb
#      downloads a 16 MiB file 3 times (sha256 compared).
#
#   ivshim-PID-a 10.78.0.1 ──veth── 10.78.0.2 ivshim-PID-b      ivsockd + 2 agents
#   (socat, curl)                     (socat, python3 http.server)
set -eu
cd "$(dirname "$0")/../.."
. preload/tests/shim-env.sh
SOCAT=$(command -v socat) || { echo "SKIP: socat missing"; exit 77; }
PY=/usr/bin/python3 # one the users can run (not one under /root)
[ -x "$PY" ] || { echo "SKIP: /usr/bin/python3 missing"; exit 77; }
CURL=$(command -v curl) || { echo "SKIP: curl missing"; exit 77; }
command -v useradd >/dev/null && command -v setpriv >/dev/null || { echo "SKIP: useradd/setpriv missing"; exit 77; }
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
. preload/tests/users-env.sh
shim_env_up
users_ensure
trap 'shim_env_down; users_cleanup' EXIT
chmod 1777 "$SHIM_ENV_DIR"
export IVSOCK_STATS=1
MB=$((16 << 20))
N=3
fail() { echo "FAIL: $*"; for f in "$SHIM_ENV_DIR"/*.log "$SHIM_ENV_DIR"/*.out; do echo "== $f"; tail -n 20 "$f"; done; exit 1; }
D=$SHIM_ENV_DIR/www
mkdir -m 0755 "$D"
head -c $MB /dev/urandom >"$D/blob"
chmod 0644 "$D/blob"
SUM=$(sha256sum <"$D/blob" | cut -d' ' -f1)

# echo_client USER PORT TAG: socat as USER sends the blob, the echo must match
echo_client() {
	as_user "$1" A timeout 120 "$SOCAT" -t 60 -b 65536 - "TCP:$SHIM_B_IP:$2" \
		<"$D/blob" >"$SHIM_ENV_DIR/echo-$3" 2>"$SHIM_ENV_DIR/cli-$3.out" || fail "socat client $3"
	[ "$(sha256sum <"$SHIM_ENV_DIR/echo-$3" | cut -d' ' -f1)" = "$SUM" ] ||
		fail "$3: echo differs ($(stat -c %s "$SHIM_ENV_DIR/echo-$3") bytes back)"
	rm -f "$SHIM_ENV_DIR/echo-$3"
	[ "$(stat_sum "$SHIM_ENV_DIR/cli-$3.out" accelerated_connect)" = 1 ] || fail "$3: client not accelerated"
	[ "$(stat_sum "$SHIM_ENV_DIR/cli-$3.out" ring_tx_bytes)" = $MB ] || fail "$3: client tx not on the rings"
	[ "$(stat_sum "$SHIM_ENV_DIR/cli-$3.out" ring_rx_bytes)" = $MB ] || fail "$3: client rx not on the rings"
	no_fallback "$SHIM_ENV_DIR/cli-$3.out" || fail "$3: client fell back"
}
# server_children FILE: stats lines of processes that echoed the blob on the rings
server_children() { grep -c "ring_tx_bytes=$MB ring_rx_bytes=$MB " "$1" || true; }
uids_in_ns() { # NS COMM: uids of COMM processes in the namespace
	local p
	for p in $(ip netns pids "$(shim_ns "$1")"); do
		[ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$2" ] && stat -c %u "/proc/$p" 2>/dev/null
	done | sort -n | xargs
}
stop_in_ns() { # NS COMM: end the COMM processes this test started there
	local p
	for p in $(ip netns pids "$(shim_ns "$1")"); do
		[ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$2" ] && kill "$p" 2>/dev/null
	done
	for _ in $(seq 50); do [ -z "$(uids_in_ns "$1" "$2")" ] && return 0; sleep 0.05; done
	return 1
}

echo "== 1. root socat, fork, su=$UA (child drops after accept); clients: socat as $UB"
shim_run B "$SOCAT" "TCP-LISTEN:7901,reuseaddr,fork,su=$UA" PIPE >"$SHIM_ENV_DIR/srv1.out" 2>&1 &
srv=$!
wait_tcp_listen B 7901 || fail "socat did not listen"
sleep 0.3 # the shim registers the listener right after the kernel's listen()
# a connection held open 2 s: its serving child runs as ivs-usera
(sleep 2; printf held) | as_user "$UB" A timeout 30 "$SOCAT" -t 10 - "TCP:$SHIM_B_IP:7901" \
	>"$SHIM_ENV_DIR/held1" 2>"$SHIM_ENV_DIR/cli-held1.out" &
held=$!
for _ in $(seq 40); do [ "$(uids_in_ns B socat)" = "0 $UA_ID" ] && break; sleep 0.05; done
[ "$(uids_in_ns B socat)" = "0 $UA_ID" ] || fail "socat processes in B run as '$(uids_in_ns B socat)', not '0 $UA_ID'"
wait $held || fail "held connection"
[ "$(cat "$SHIM_ENV_DIR/held1")" = held ] || fail "held connection echoed '$(cat "$SHIM_ENV_DIR/held1")'"
[ "$(stat_sum "$SHIM_ENV_DIR/cli-held1.out" accelerated_connect)" = 1 ] || fail "held connection not accelerated"
for i in $(seq $N); do echo_client "$UB" 7901 "1-$i"; done
sleep 0.5
kids=$(server_children "$SHIM_ENV_DIR/srv1.out")
[ "$kids" = $N ] || fail "$kids of $N socat children (uid $UA_ID) echoed on the rings"
stop_in_ns B socat || fail "socat did not stop"
wait $srv 2>/dev/null || true
echo "ok: $N x 16 MiB through socat children of uid $UA_ID, clients of uid $UB_ID"

echo "== 2. socat listening as $UB from exec (fork per connection); clients: socat as $UA"
as_user "$UB" B "$SOCAT" "TCP-LISTEN:7902,reuseaddr,fork" PIPE >"$SHIM_ENV_DIR/srv2.out" 2>&1 &
srv=$!
wait_tcp_listen B 7902 || fail "unprivileged socat did not listen"
sleep 0.3
for i in $(seq $N); do echo_client "$UA" 7902 "2-$i"; done
sleep 0.5
kids=$(server_children "$SHIM_ENV_DIR/srv2.out")
[ "$kids" = $N ] || fail "$kids of $N children of the unprivileged socat echoed on the rings"
[ "$(uids_in_ns B socat)" = "$UB_ID" ] || fail "the listening socat runs as '$(uids_in_ns B socat)'"
stop_in_ns B socat || fail "socat did not stop"
wait $srv 2>/dev/null || true
echo "ok: $N x 16 MiB through socat of uid $UB_ID, clients of uid $UA_ID"

echo "== 3. python3 -m http.server as $UA from exec; curl as $UB, $N downloads"
as_user "$UA" B "$PY" -u -m http.server --bind "$SHIM_B_IP" --directory "$D" 7903 \
	>"$SHIM_ENV_DIR/srv3.out" 2>&1 &
srv=$!
wait_out "$SHIM_ENV_DIR/srv3.out" "Serving HTTP" || fail "http.server did not start"
for i in $(seq $N); do
	as_user "$UB" A timeout 120 "$CURL" -sS -o - "http://$SHIM_B_IP:7903/blob" \
		>"$SHIM_ENV_DIR/dl-$i" 2>"$SHIM_ENV_DIR/cli-3-$i.out" || fail "curl $i"
	[ "$(sha256sum <"$SHIM_ENV_DIR/dl-$i" | cut -d' ' -f1)" = "$SUM" ] || fail "download $i differs"
	rm -f "$SHIM_ENV_DIR/dl-$i"
	f=$SHIM_ENV_DIR/cli-3-$i.out
	[ "$(stat_sum "$f" accelerated_connect)" = 1 ] || fail "curl $i not accelerated: $(cat "$f")"
	rx=$(stat_sum "$f" ring_rx_bytes)
	# the file and the response's headers, all on the rings
	[ "$rx" -gt $MB ] && [ "$rx" -lt $((MB + 4096)) ] || fail "curl $i: $rx bytes on the rings"
	[ "$(stat_sum "$f" ring_tx_bytes)" -gt 0 ] || fail "curl $i: request not on the rings"
	no_fallback "$f" || fail "curl $i fell back"
done
ua=$(shim_exec B "$SHIM_AGENT" --status | jq "[.clients[] | select(.uid == $UA_ID)] | length")
[ "$ua" -ge 1 ] || fail "agent B lists no client of uid $UA_ID (http.server)"
kill $srv; wait $srv 2>/dev/null || true
echo "ok: $N x 16 MiB from python3 http.server of uid $UA_ID to curl of uid $UB_ID"

no_channels_left || fail "channels leaked: $(shim_ctl channels --json)"
echo "shim-users-real: all passed"
