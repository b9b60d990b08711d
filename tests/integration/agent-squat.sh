#!/bin/bash
# SPDX-License-Identifier: MIT
# Whoever binds the agent's name first is not trusted with anything.
# In a fresh network namespace with no agent, agent-squat takes
# "@ivsock-agent" and a root shimmed client/server pair (shim-stream over
# 127.0.0.1, every byte checked) must finish on TCP, never hang, and:
#   - unprivileged squatter (uid 65534), silent or answering with forged
#     data: receives zero bytes from the root processes (SO_PEERCRED is
#     checked before anything is sent); counted as agent_untrusted;
#   - root fake agent that never answers: the shim gives up after
#     IVSOCK_AGENT_TIMEOUT_MS (agent_timeout);
#   - root fake agent handing an unsealed region memfd, a too-short one, or a
#     pipe instead of an eventfd: refused before mmap (agent_bad_fd).
#
#   netns ivsq-PID:  agent-squat MODE @ivsock-agent   (uid 65534 or root)
#                    ivsock-run shim-stream server 127.0.0.1:PORT
#                    ivsock-run shim-stream client 127.0.0.1:PORT
set -eu
cd "$(dirname "$0")/../.."
O=${O:-build}
case $O in /*) OB=$O ;; *) OB=$PWD/$O ;; esac
LIB=$OB/preload/libivsock.so
RUN=$OB/preload/ivsock-run
TOOL=$OB/preload/tests/shim-stream
SQUAT=$OB/tests/tools/agent-squat

skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces, setpriv)"
for f in "$LIB" "$RUN" "$TOOL" "$SQUAT"; do [ -x "$f" ] || [ -f "$f" ] || skip "$f not built"; done
command -v setpriv >/dev/null || skip "setpriv missing"
NS=ivsq-$$
ip netns add "$NS" 2>/dev/null || skip "cannot create network namespaces"
T=$(mktemp -d /tmp/ivsock-squat.XXXXXX)
chmod 0777 "$T"
SPID=
cleanup() {
	local rc=$?
	[ -n "$SPID" ] && kill -9 "$SPID" 2>/dev/null
	for p in $(ip netns pids "$NS" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	ip netns del "$NS" 2>/dev/null || true
	if [ $rc -ne 0 ]; then
		for f in "$T"/*.out; do [ -f "$f" ] && { echo "--- $f"; tail -n 8 "$f"; }; done
	fi
	rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
stat_of() { grep -o "$2=[0-9]*" "$1" | tail -n 1 | cut -d= -f2; }
ip -n "$NS" link set lo up

port=7300
# run_case MODE USER COUNTER
run_case() {
	local mode=$1 user=$2 counter=$3 pre=()
	port=$((port + 1))
	[ "$user" = nobody ] && pre=(setpriv --reuid=65534 --regid=65534 --clear-groups)
	rm -f "$T/count"
	ip netns exec "$NS" "${pre[@]}" "$SQUAT" "$mode" @ivsock-agent "$T/count" >"$T/squat-$mode.out" 2>&1 &
	SPID=$!
	for _ in $(seq 100); do grep -q listening "$T/squat-$mode.out" 2>/dev/null && break; sleep 0.05; done
	grep -q listening "$T/squat-$mode.out" || fail "$mode: squatter did not start"

	ip netns exec "$NS" env IVSOCK_STATS=1 IVSOCK_AGENT_TIMEOUT_MS=500 \
		timeout 60 "$RUN" --lib "$LIB" "$TOOL" server $port 1 >"$T/srv-$mode.out" 2>&1 &
	local srv=$!
	sleep 0.3
	ip netns exec "$NS" env IVSOCK_STATS=1 IVSOCK_AGENT_TIMEOUT_MS=500 \
		timeout 60 "$RUN" --lib "$LIB" "$TOOL" client 127.0.0.1 $port $((4 << 20)) 1 \
		>"$T/cli-$mode.out" 2>&1 || fail "$mode ($user): client failed or hung"
	wait $srv || fail "$mode ($user): server failed or hung"
	kill -9 "$SPID" 2>/dev/null || true
	wait "$SPID" 2>/dev/null || true
	SPID=

	[ "$(stat_of "$T/cli-$mode.out" accelerated_connect)" = 0 ] || fail "$mode: accelerated through a fake agent"
	[ "$(stat_of "$T/cli-$mode.out" ring_tx_bytes)" = 0 ] || fail "$mode: bytes went to rings"
	[ "$(stat_of "$T/cli-$mode.out" fallback_no_agent)" = 1 ] || fail "$mode: fallback not counted as no_agent"
	local c s
	c=$(stat_of "$T/cli-$mode.out" "$counter")
	s=$(stat_of "$T/srv-$mode.out" "$counter")
	[ "${c:-0}" -ge 1 ] && [ "${s:-0}" -ge 1 ] || fail "$mode: $counter not counted (client ${c:-none}, server ${s:-none})"
	if [ "$user" = nobody ]; then
		[ "$(cat "$T/count")" = 0 ] || fail "$mode: the squatter received $(cat "$T/count") bytes from root"
	fi
	echo "ok: $mode fake agent ($user): TCP, byte-exact, $counter counted$([ "$user" = nobody ] && echo ", squatter got 0 bytes")"
}

run_case silent nobody agent_untrusted
run_case forge nobody agent_untrusted
run_case mute root agent_timeout
run_case unsealed root agent_bad_fd
run_case short root agent_bad_fd
run_case notevent root agent_bad_fd

echo "== IVSOCK_AGENT_UID trusts a configured uid (the forged answer is then checked like any other)"
port=$((port + 1))
ip netns exec "$NS" setpriv --reuid=65534 --regid=65534 --clear-groups "$SQUAT" forge @ivsock-agent "$T/count" >"$T/squat-uid.out" 2>&1 &
SPID=$!
for _ in $(seq 100); do grep -q listening "$T/squat-uid.out" 2>/dev/null && break; sleep 0.05; done
ip netns exec "$NS" env IVSOCK_STATS=1 IVSOCK_AGENT_UID=65534 \
	timeout 60 "$RUN" --lib "$LIB" "$TOOL" server $port 1 >"$T/srv-uid.out" 2>&1 &
srv=$!
sleep 0.3
ip netns exec "$NS" env IVSOCK_STATS=1 IVSOCK_AGENT_UID=65534 \
	timeout 60 "$RUN" --lib "$LIB" "$TOOL" client 127.0.0.1 $port $((1 << 20)) 1 \
	>"$T/cli-uid.out" 2>&1 || fail "uid: client"
wait $srv || fail "uid: server"
[ "$(cat "$T/count")" -gt 0 ] || fail "IVSOCK_AGENT_UID=65534 did not trust uid 65534"
[ "$(stat_of "$T/cli-uid.out" agent_bad_fd)" -ge 1 ] || fail "uid: unsealed region not refused"
echo "ok: IVSOCK_AGENT_UID=65534 talks to uid 65534 and still checks its fds"
echo PASS
