#!/bin/bash
# SPDX-License-Identifier: MIT
# ivsockd's ring policy (docs/classes.md, "Who gives a ring back"):
#  - under pressure (a VM's free 1 KiB blocks below reclaim_free = 2 % of
#    its quota) the idlest connections go to TCP until that many are free,
#    new connections then get rings at once, and the connections moved come
#    back to rings when they are used and there is room;
#  - an idle connection on a ring larger than the default class gives it
#    back (shrink_idle) and gets a ring of its own class again on use.
# Every byte of every round is echoed and checked by conn-herd, on rings
# and TCP alike; nothing is left behind at the end.
#
#   ivshim-PID-a 10.78.0.1 ──veth── 10.78.0.2 ivshim-PID-b      ivsockd + 2 agents
set -eu
cd "$(dirname "$0")/../.."
. preload/tests/shim-env.sh
# per VM: 1K rings x 614 (the default class), 128K rings x 2
SHIM_REGION=64M
SHIM_DOMAIN_OPTS="max_vms=2,classes=1K:15+128K:2,ring=1K,reclaim_idle=1s,shrink_idle=2s,reclaim_free=2"
shim_env_up >/dev/null
export IVSOCK_STATS=1
D=$SHIM_ENV_DIR
HERD=$SHIM_OB/preload/tests/conn-herd
stat_of() { grep -o "$2=[0-9]*" "$1" | tail -n 1 | cut -d= -f2; }
fail() {
	echo "FAIL: $*"
	for f in "$D"/*.err "$D"/ivsockd.log; do [ -s "$f" ] || continue; echo "== $f"; tail -n 4 "$f"; done
	exit 1
}
connected() { # PORT: connected channels to PORT
	shim_ctl channels --json | jq --argjson p "$1" \
		'[.channels[] | select(.tuple.dport == $p and .state == "connected")] | length'
}
sizes() { # PORT: ring sizes of the connected channels to PORT
	shim_ctl channels --json | jq -r --argjson p "$1" \
		'[.channels[] | select(.tuple.dport == $p and .state == "connected") | .ring_size] | sort | map(tostring) | join(" ")'
}
domain() { shim_ctl domain list --json | jq -r ".domains[0].$1"; }
# herd NAME PORT N [RING]: server on B, client on A with N connections;
# round 0 done when this returns. Sets the client's pid in herd_pid.
herd() {
	IVSOCK_RING_SIZE=${4:-1024} shim_run B "$HERD" server --bind 0.0.0.0 "$2" 2>"$D/$1-srv.err" &
	for _ in $(seq 50); do grep -q listening "$D/$1-srv.err" 2>/dev/null && break; sleep 0.1; done
	IVSOCK_RING_SIZE=${4:-1024} shim_run A "$HERD" client "$SHIM_B_IP" "$2" "$3" \
		--ready "$D/$1.ready" 2>"$D/$1-cli.err" &
	for _ in $(seq 300); do [ -s "$D/$1.ready" ] && break; sleep 0.1; done
	[ "$(cat "$D/$1.ready" 2>/dev/null)" = 0 ] || fail "$1: round 0 did not complete"
	herd_pid=$(pgrep -f "conn-herd client $SHIM_B_IP $2 " | head -n 1)
}
round() { # NAME PID R: run round R of that client, wait for it
	kill -USR1 "$2"
	for _ in $(seq 200); do [ "$(cat "$D/$1.ready")" = "$3" ] && return 0; sleep 0.05; done
	fail "$1: round $3 did not complete"
}
herd_end() { # NAME PORT PID N
	local s
	s=$(pgrep -f "conn-herd server --bind 0.0.0.0 $2\$" | head -n 1)
	kill -TERM "$3"; while kill -0 "$3" 2>/dev/null; do sleep 0.05; done
	grep -q "closed $4 connections" "$D/$1-cli.err" || fail "$1: client did not close cleanly"
	kill -TERM "$s"; while kill -0 "$s" 2>/dev/null; do sleep 0.05; done
}
until_true() { # TRIES CMD...: until CMD succeeds, 0.1 s apart
	local n=$1
	shift
	for _ in $(seq "$n"); do "$@" && return 0; sleep 0.1; done
	return 1
}

echo "== pressure: 614 idle connections hold every 1K ring of their VM"
herd hold 7700 614
n=$(connected 7700)
echo "hold: $n of 614 connections on rings"
[ "$n" -ge 600 ] || fail "hold: only $n connections accelerated"
reclaimed_enough() { [ "$(domain reclaimed)" -ge 12 ] && [ "$(connected 7700)" -le 602 ]; }
until_true 100 reclaimed_enough || fail "no idle connection moved to TCP: reclaimed=$(domain reclaimed), connected=$(connected 7700)"
echo "ivsockd moved $(domain reclaimed) idle connections to TCP; $(connected 7700) hold rings"

echo "== new connections get rings at once"
herd new 7720 10
[ "$(connected 7720)" = 10 ] || fail "new: $(connected 7720) of 10 on rings"
round new "$herd_pid" 1
new_pid=$herd_pid

echo "== the moved connections work (rounds on TCP or back on rings), then come back"
round hold "$(pgrep -f "conn-herd client $SHIM_B_IP 7700 " | head -n 1)" 1
herd_end new 7720 "$new_pid" 10
[ "$(stat_of "$D/new-cli.err" fallback_no_rings)" = 0 ] || fail "new: fell back for lack of rings"
hp=$(pgrep -f "conn-herd client $SHIM_B_IP 7700 " | head -n 1)
round hold "$hp" 2
round hold "$hp" 3
herd_end hold 7700 "$hp" 614
moved=$(stat_of "$D/hold-cli.err" switch_reclaim)
back=$(stat_of "$D/hold-cli.err" promoted)
echo "holder: $moved ring(s) taken back, $back connection(s) back on rings"
[ "${moved:-0}" -ge 12 ] || fail "holder: switch_reclaim=$moved"
[ "${back:-0}" -ge 1 ] || fail "holder: no connection came back to a ring"

echo "== shrink: idle connections on 128K rings (above the 1K default) give them back"
# both 128K rings of the VM: one goes under pressure (no 128K ring free)
# after 1 s, the other for being a large idle ring after 2 s
herd big 7730 2 131072
[ "$(sizes 7730)" = "131072 131072" ] || fail "big: rings $(sizes 7730), not two of 128K"
shrunk_both() { [ "$(domain shrunk)" -ge 1 ] && [ "$(connected 7730)" = 0 ]; }
until_true 100 shrunk_both || fail "big: not given back: shrunk=$(domain shrunk), connected=$(connected 7730)"
bp=$herd_pid
# rounds of traffic (a connection asks for a ring again on its calls, the
# first time 600 ms after it went to TCP) until both are on 128K rings again
r=0
back_big() { [ "$(sizes 7730)" = "131072 131072" ]; }
while [ $r -lt 40 ] && ! back_big; do
	r=$((r + 1))
	round big "$bp" $r
	sleep 0.2
done
back_big || fail "big: rings $(sizes 7730) after $r rounds, not two of 128K again"
herd_end big 7730 "$bp" 2
echo "big: given back when idle, 128K rings again when used"

for _ in $(seq 100); do [ "$(shim_ctl channels --json | jq '.channels | length')" = 0 ] && break; sleep 0.05; done
[ "$(shim_ctl channels --json | jq '.channels | length')" = 0 ] || fail "channels left behind"
echo "PASS shim-reclaim"
