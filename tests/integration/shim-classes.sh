#!/bin/bash
# SPDX-License-Identifier: MIT
# Which ring class a connection gets (docs/classes.md): the default class,
# then larger classes when it is used up, never a smaller one below 128 KiB
# (TCP instead); IVSOCK_RING_SIZE asks for the smallest class at least that
# big; a writer stalled on full small rings moves to TCP instead of hanging.
# Connections are held by conn-herd (every byte echoed and checked, on
# rings and on TCP alike) while ivsockctl tells each channel's class.
#
#   ivshim-PID-a 10.78.0.1 ──veth── 10.78.0.2 ivshim-PID-b      ivsockd + 2 agents
set -eu
cd "$(dirname "$0")/../.."
. preload/tests/shim-env.sh
# per VM: 1K x 409, 32K x 45, 128K x 12 (default), 1M x 3
SHIM_REGION=64M
SHIM_DOMAIN_OPTS="max_vms=2,classes=1K:10+32K:10+128K:10+1M:20,ring=128K,reclaim_idle=0,shrink_idle=0"
shim_env_up >/dev/null
HERD=$SHIM_OB/preload/tests/conn-herd
D=$SHIM_ENV_DIR
stat_of() { grep -o "$2=[0-9]*" "$1" | tail -n 1 | cut -d= -f2; }
fail() {
	echo "FAIL: $*"
	for f in "$D"/*.err "$D"/ivsockd.log; do [ -s "$f" ] || continue; echo "== $f"; tail -n 6 "$f"; done
	exit 1
}
# sizes PORT: the ring sizes of the connected channels to PORT, "SIZE xCOUNT" sorted
sizes() {
	shim_ctl channels --json | jq -r --argjson p "$1" \
		'[.channels[] | select(.tuple.dport == $p and .state == "connected") | .ring_size]
		 | group_by(.) | map("\(.[0])x\(length)") | join(" ")'
}
# herd NAME PORT N [ENV...]: N held connections; sets HCLI, HSRV; HJOBS
herd() {
	local name=$1 port=$2 n=$3 i; shift 3
	IVSOCK_STATS=1 shim_run B "$HERD" server --bind 0.0.0.0 "$port" 2>"$D/$name-srv.err" &
	HJOBS="$HJOBS $!"
	for i in $(seq 50); do grep -q listening "$D/$name-srv.err" 2>/dev/null && break; sleep 0.1; done
	IVSOCK_STATS=1 shim_run A env "$@" "$HERD" client "$SHIM_B_IP" "$port" "$n" --bytes 4096 \
		--ready "$D/$name.ready" 2>"$D/$name-cli.err" &
	HJOBS="$HJOBS $!"
	for i in $(seq 300); do [ -s "$D/$name.ready" ] && break; sleep 0.1; done
	[ -s "$D/$name.ready" ] || fail "$name: round 0 did not complete"
}
stop() { # NAME PORT: close the herd, check both programs
	local c s
	c=$(pgrep -f "conn-herd client $SHIM_B_IP $2 " | head -n 1)
	s=$(pgrep -f "conn-herd server --bind 0.0.0.0 $2\$" | head -n 1)
	kill -TERM "$c"; while kill -0 "$c" 2>/dev/null; do sleep 0.05; done
	kill -TERM "$s"; while kill -0 "$s" 2>/dev/null; do sleep 0.05; done
	grep -q "closed .* connections" "$D/$1-cli.err" || fail "$1: client did not close cleanly"
}
HJOBS=

echo "== default class used up: larger ones next, then TCP (not the small ones)"
herd default 7601 20
got=$(sizes 7601)
echo "rings: $got"
[ "$got" = "131072x12 1048576x3" ] || fail "default: expected 12 x 128K and 3 x 1M, got '$got'"
stop default 7601
[ "$(stat_of "$D/default-cli.err" accelerated_connect)" = 15 ] || fail "default: 15 accelerated expected"
[ "$(stat_of "$D/default-cli.err" fallback_no_rings)" = 5 ] || fail "default: 5 on TCP expected"

echo "== IVSOCK_RING_SIZE asks for a class"
herd small 7602 5 IVSOCK_RING_SIZE=1024
herd mid 7603 3 IVSOCK_RING_SIZE=5000
got="$(sizes 7602) / $(sizes 7603)"
echo "rings: $got"
[ "$got" = "1024x5 / 32768x3" ] || fail "asked sizes: expected '1024x5 / 32768x3', got '$got'"
stop small 7602
stop mid 7603
# shellcheck disable=SC2086
wait $HJOBS || fail "a herd program failed"

echo "== a program that writes more than two small rings hold before it reads"
# 1 MiB per connection in 32 KiB writes, then the echo read back: on 1 KiB
# rings both ends fill both rings; the blocked writer moves its stream to
# TCP after 100 ms (switch_stalled) and the transfer completes, checked
shim_run B timeout 60 "$SHIM_TOOL" server 7604 3 >"$D/stall-srv.err" 2>&1 &
srv=$!
sleep 0.3
IVSOCK_STATS=1 IVSOCK_RING_SIZE=1024 shim_run A timeout 60 "$SHIM_TOOL" multi "$SHIM_B_IP" 7604 \
	$((1 << 20)) 3 2>"$D/stall-cli.err" || fail "write-before-read on 1 KiB rings did not complete"
wait $srv || fail "stall server"
echo "accelerated $(stat_of "$D/stall-cli.err" accelerated_connect), stalled switches $(stat_of "$D/stall-cli.err" switch_stalled)"
[ "$(stat_of "$D/stall-cli.err" accelerated_connect)" = 3 ] || fail "stall: not accelerated"
[ "$(stat_of "$D/stall-cli.err" switch_stalled)" -ge 1 ] || fail "stall: no stalled switch counted"

echo "== the same from an event loop: non-blocking writes, EPOLLOUT waits"
# conn-herd --write-first: each connection writes its 256 KiB before it
# reads; its writes get EAGAIN on full rings and it waits in epoll_wait for
# EPOLLOUT, where the shim looks at the stall (nb_write_stalled)
IVSOCK_STATS=1 IVSOCK_RING_SIZE=1024 shim_run B "$HERD" server --bind 0.0.0.0 7605 2>"$D/nbstall-srv.err" &
srv=$!
for i in $(seq 50); do grep -q listening "$D/nbstall-srv.err" 2>/dev/null && break; sleep 0.1; done
IVSOCK_STATS=1 IVSOCK_RING_SIZE=1024 shim_run A timeout 60 "$HERD" client "$SHIM_B_IP" 7605 3 \
	--bytes $((256 << 10)) --write-first --hold-secs 0 2>"$D/nbstall-cli.err" ||
	fail "non-blocking write-before-read on 1 KiB rings did not complete"
s=$(pgrep -f "conn-herd server --bind 0.0.0.0 7605\$" | head -n 1)
kill -TERM "$s"
wait $srv || fail "non-blocking stall server"
# either end may be the one found stalled (the server's echo writes wait
# too); the other follows (switch_peer)
st=$(( $(stat_of "$D/nbstall-cli.err" switch_stalled) + $(stat_of "$D/nbstall-srv.err" switch_stalled) ))
echo "accelerated $(stat_of "$D/nbstall-cli.err" accelerated_connect), stalled switches $st"
[ "$(stat_of "$D/nbstall-cli.err" accelerated_connect)" = 3 ] || fail "non-blocking stall: not accelerated"
[ "$st" -ge 1 ] || fail "non-blocking stall: no stalled switch counted"
grep -q "round 0: 3 connections verified" "$D/nbstall-cli.err" || fail "non-blocking stall: round not verified"
echo PASS
