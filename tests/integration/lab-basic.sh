#!/bin/bash
# SPDX-License-Identifier: MIT
# The lab itself: up twice (second is refused, --reuse accepted), addresses
# right, byte-exact TCP v4/v6 between VMs of one host and across hosts,
# `lab down` idempotent and leaves no namespace behind.
#
#   ivs-h1-vm1 ── ivs-h1 br0 ── ivs-h1-vm2        (same host)
#                    │
#                 ivs-h2 br0 ── ivs-h2-vm1        (cross host)
set -eu
cd "$(dirname "$0")/../.."
. tests/lab/lib.sh
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
command -v socat >/dev/null || { echo "SKIP: socat missing (make deps)"; exit 77; }
if "$LAB" status >/dev/null 2>&1 || [ -f "${IVSOCK_LAB_DIR:-/run/ivsock-lab}/state" ]; then
	echo "SKIP: a lab is already running; lab-basic needs to own it"; exit 77
fi
LAB_OURS=1
trap lab_on_exit EXIT
"$LAB" up --hosts 2 --vms 2
if "$LAB" up 2>/dev/null; then echo "FAIL: second 'lab up' accepted"; exit 1; fi
"$LAB" up --reuse
[ "$("$LAB" ip vm2)" = 10.77.1.2 ] || { echo "FAIL: lab ip vm2"; exit 1; }
[ "$("$LAB" ip h2-vm1 -6)" = fd77::2:1 ] || { echo "FAIL: lab ip -6"; exit 1; }
"$LAB" status
if lab_daemons; then "$LAB" wait-ready 30; fi

tmp=$(mktemp -d); LAB_EXIT_HOOKS+=("rm -rf $tmp")
head -c 3000000 /dev/urandom >"$tmp/in"
xfer() { # server-vm listen-spec client-vm connect-spec
	"$LAB" exec "$1" timeout 20 socat -u "$2,reuseaddr" "CREATE:$tmp/out" &
	local spid=$! i
	for i in $(seq 50); do
		"$LAB" exec "$3" socat -u "OPEN:$tmp/in" "$4" 2>/dev/null && break
		sleep 0.1
	done
	wait $spid
	cmp "$tmp/in" "$tmp/out" || { echo "FAIL: $1 <- $3 ($4) not byte-exact"; exit 1; }
	echo "ok: $3 -> $1 $4"
	rm -f "$tmp/out"
}
xfer vm1 TCP4-LISTEN:7001 vm2 TCP4:10.77.1.1:7001
xfer vm2 TCP6-LISTEN:7002 vm1 "TCP6:[fd77::1:2]:7002"
xfer h2-vm1 TCP4-LISTEN:7003 vm1 TCP4:10.77.2.1:7003
# `down` ends what `lab exec` started and every daemon.
"$LAB" exec vm2 sleep 1000 &
sleeper=$!
sleep 0.3
pids=$(cat "${IVSOCK_LAB_DIR:-/run/ivsock-lab}"/pids/*.pid 2>/dev/null || true)
"$LAB" down
"$LAB" down
LAB_OURS=0
{ wait $sleeper; } 2>/dev/null || true
for p in $pids; do
	if kill -0 "$p" 2>/dev/null; then echo "FAIL: daemon pid $p survived 'lab down'"; exit 1; fi
done
left=$(ip netns list | grep -E '^ivs-h' || true)
[ -z "$left" ] || { echo "FAIL: namespaces left: $left"; exit 1; }
echo "PASS"
