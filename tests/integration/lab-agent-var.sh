#!/bin/bash
# SPDX-License-Identifier: MIT
# One name, one meaning: the lab's agent binary is IVSOCK_AGENT_BIN, and
# IVSOCK_AGENT stays the shim's agent socket. The lab starts the binary named
# by IVSOCK_AGENT_BIN; `lab run` refuses an IVSOCK_AGENT that names a program
# (the old lab usage, which handed the shim a binary path as its socket and
# silently left every program on TCP); ivsock-run ignores such a value with a
# warning; a real socket address in IVSOCK_AGENT still reaches the shim.
set -eu
cd "$(dirname "$0")/../.."
. tests/lab/lib.sh
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
if "$LAB" status >/dev/null 2>&1 || [ -f "${IVSOCK_LAB_DIR:-/run/ivsock-lab}/state" ]; then
	echo "SKIP: a lab is already running; this test needs to own it"; exit 77
fi
AGENT=$LAB_OB/guestdrv/agent/ivsock-agent
TOOL=$LAB_OB/preload/tests/shim-stream
if [ ! -x "$AGENT" ] || [ ! -x "$TOOL" ]; then echo "SKIP: agent or shim-stream not built"; exit 77; fi
fail() { echo "FAIL: $*"; exit 1; }
tmp=$(mktemp -d)
LAB_OURS=1
LAB_EXIT_HOOKS+=("rm -rf $tmp")
trap lab_on_exit EXIT
# an agent binary the lab only finds under IVSOCK_AGENT_BIN
printf '#!/bin/sh\necho started >>%s/agent-bin-used\nexec %s "$@"\n' "$tmp" "$AGENT" >"$tmp/my-agent"
chmod +x "$tmp/my-agent"
unset IVSOCK_AGENT
IVSOCK_AGENT_BIN=$tmp/my-agent "$LAB" up --hosts 1 --vms 2
lab_daemons || { echo "SKIP: lab without daemons"; exit 77; }
"$LAB" wait-ready 30
[ -s "$tmp/agent-bin-used" ] || fail "the lab did not start IVSOCK_AGENT_BIN"

echo "== lab run refuses IVSOCK_AGENT naming a program"
if IVSOCK_AGENT=$AGENT "$LAB" run vm1 true 2>"$tmp/err"; then
	fail "lab run accepted IVSOCK_AGENT=$AGENT (the shim would dial a binary path)"
fi
grep -q IVSOCK_AGENT_BIN "$tmp/err" || fail "no hint at IVSOCK_AGENT_BIN: $(cat "$tmp/err")"

stream() { # env... : server in vm2, client in vm1 under ivsock-run, prints client stats
	local port=$1; shift
	"$LAB" run vm2 env IVSOCK_STATS=1 timeout 30 "$TOOL" server "$port" 1 >"$tmp/srv-$port" 2>&1 &
	sleep 0.5
	"$LAB" exec vm1 env "$@" "$IVSOCK_RUN" --stats timeout 30 "$TOOL" client "$("$LAB" ip vm2)" "$port" 1048576 1 \
		2>"$tmp/cli-$port" || fail "stream $port"
	wait
	grep -o "accelerated_connect=[0-9]*" "$tmp/cli-$port" | cut -d= -f2 | sort -n | tail -n 1
}
echo "== ivsock-run ignores a program in IVSOCK_AGENT (warns), stays accelerated"
[ "$(stream 7701 IVSOCK_AGENT="$AGENT")" = 1 ] || fail "not accelerated with a stray IVSOCK_AGENT"
grep -q "is a program, not the agent's socket" "$tmp/cli-7701" || fail "ivsock-run did not warn"
echo "== IVSOCK_AGENT as a socket address still reaches the shim"
[ "$(stream 7702 IVSOCK_AGENT=@ivsock-agent)" = 1 ] || fail "not accelerated with IVSOCK_AGENT=@ivsock-agent"
[ "$(stream 7703 IVSOCK_AGENT=@ivsock-no-such-agent)" = 0 ] || fail "IVSOCK_AGENT did not reach the shim"
echo "lab-agent-var: all passed"
