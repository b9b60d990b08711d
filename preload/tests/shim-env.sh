# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# A private two-"VM" setup for the shim's integration tests, independent of
# the shared lab (tests/lab) so that runs never disturb each other: per run,
# namespaces ivshim-PID-a (10.78.0.1) and ivshim-PID-b (10.78.0.2) joined by
# one veth pair, one ivsockd (own region and control socket), one
# ivsock-agent per namespace. Source it from bash.
#
#   ivshim-PID-a: veth0 10.78.0.1/24 ──veth── veth0 10.78.0.2/24 :ivshim-PID-b
#   ivsockd (root ns): $SHIM_ENV_DIR/domain.sock, ctl.sock
#
#   shim_env_up / shim_env_down      (down also runs on EXIT)
#   shim_exec A|B CMD...             run in the namespace, shim not loaded
#   shim_run A|B CMD...              same under ivsock-run
#   shim_ctl ARGS...                 ivsockctl on our daemon
#   SHIM_A_IP SHIM_B_IP SHIM_LIB SHIM_TOOL
#   SHIM_AGENT_OPTS (set before shim_env_up): extra ivsock-agent options
#   SHIM_REGION, SHIM_DOMAIN_OPTS (same): region size (128M), more ivsockd
#   --domain keys (e.g. max_vms=2,classes=1K:70+32K:5+1M:25)

IVSOCK_TOP=${IVSOCK_TOP:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
O=${O:-build}
case $O in /*) SHIM_OB=$O ;; *) SHIM_OB=$IVSOCK_TOP/$O ;; esac
SHIM_LIB=$SHIM_OB/preload/libivsock.so
SHIM_RUNNER=$SHIM_OB/preload/ivsock-run
SHIM_TOOL=$SHIM_OB/preload/tests/shim-stream
SHIM_IVSOCKD=$SHIM_OB/hostd/ivsockd
SHIM_IVSOCKCTL=$SHIM_OB/hostd/ivsockctl
SHIM_AGENT=$SHIM_OB/guestdrv/agent/ivsock-agent
SHIM_A_IP=10.78.0.1
SHIM_B_IP=10.78.0.2
SHIM_ENV_DIR=
SHIM_PIDS=()
SHIM_NS_A=ivshim-$$-a
SHIM_NS_B=ivshim-$$-b

shim_need() {
	[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root (network namespaces)"; exit 77; }
	local f
	for f in "$SHIM_LIB" "$SHIM_TOOL" "$SHIM_IVSOCKD" "$SHIM_IVSOCKCTL" "$SHIM_AGENT"; do
		[ -x "$f" ] || [ -f "$f" ] || { echo "SKIP: $f not built"; exit 77; }
	done
}

shim_ns() { case $1 in A|a) echo "$SHIM_NS_A" ;; B|b) echo "$SHIM_NS_B" ;; *) echo "$1" ;; esac; }
shim_exec() { local ns; ns=$(shim_ns "$1"); shift; ip netns exec "$ns" "$@"; }
shim_run() { local ns; ns=$(shim_ns "$1"); shift; ip netns exec "$ns" "$SHIM_RUNNER" --lib "$SHIM_LIB" "$@"; }
shim_ctl() { "$SHIM_IVSOCKCTL" -s "$SHIM_ENV_DIR/ctl.sock" "$@"; }
# linger_paths PORT OUT [SECS]: once the shim-stream client writing OUT says
# it is lingering (--linger-ms), the per-path bytes of both ends of the
# connected channel to PORT as ivsockctl lists them (a JSON array, or
# nothing when it never lingered)
linger_paths() {
	local _
	for _ in $(seq $((${3:-30} * 10))); do
		if grep -q lingering "$2"; then
			shim_ctl channels --json | jq -c --argjson p "$1" \
				'[.channels[] | select(.tuple.dport == $p and .state == "connected")][0].ends | map(.paths)'
			return
		fi
		sleep 0.1
	done
}

shim_env_down() {
	local p ns
	# whatever a test left running in our namespaces, then the daemons
	for ns in "$SHIM_NS_A" "$SHIM_NS_B"; do
		for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
	done
	for p in "${SHIM_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${SHIM_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	SHIM_PIDS=()
	ip netns del "$SHIM_NS_A" 2>/dev/null || true
	ip netns del "$SHIM_NS_B" 2>/dev/null || true
	[ -n "$SHIM_ENV_DIR" ] && rm -rf "$SHIM_ENV_DIR"
	SHIM_ENV_DIR=
}

shim_start_agent() { # A|B
	local ns
	ns=$(shim_ns "$1")
	ip netns exec "$ns" "$SHIM_AGENT" --backend server --server "$SHIM_ENV_DIR/domain.sock" \
		--hostname "$ns" --foreground ${SHIM_AGENT_OPTS:-} >"$SHIM_ENV_DIR/agent-$1.log" 2>&1 &
	SHIM_PIDS+=($!)
	eval "SHIM_AGENT_PID_$1=$!"
}

# shim_restart_agent A|B ARGS...: that agent again, with these options (and
# whatever the caller exports for it); back once registered and alive.
shim_restart_agent_n=0
shim_restart_agent() {
	local side=$1 ns ip old
	shift
	ns=$(shim_ns "$side")
	eval "old=\$SHIM_AGENT_PID_$side ip=\$SHIM_${side}_IP"
	shim_restart_agent_n=$((shim_restart_agent_n + 1))
	kill "$old" 2>/dev/null || true # (it may be down already)
	wait "$old" 2>/dev/null || true
	ip netns exec "$ns" "$SHIM_AGENT" --backend server --server "$SHIM_ENV_DIR/domain.sock" \
		--hostname "$ns" --foreground "$@" \
		>"$SHIM_ENV_DIR/agent-$side$shim_restart_agent_n.log" 2>&1 &
	eval "SHIM_AGENT_PID_$side=$!"
	SHIM_PIDS+=($!)
	for _ in $(seq 200); do
		shim_ctl vm list --json 2>/dev/null |
			jq -e --arg ip "$ip" '[.vms[] | select(.state == "alive" and
				(.addresses | index($ip)))] | length == 1' >/dev/null 2>&1 &&
			shim_exec "$side" "$SHIM_AGENT" --status 2>/dev/null |
				jq -e .agent.registered >/dev/null 2>&1 &&
			return 0
		sleep 0.05
	done
	echo "shim env: agent $side did not come back with $*"
	return 1
}

shim_env_up() {
	shim_need
	SHIM_ENV_DIR=$(mktemp -d /tmp/ivshim.XXXXXX)
	trap shim_env_down EXIT
	ip netns add "$SHIM_NS_A"
	ip netns add "$SHIM_NS_B"
	ip -n "$SHIM_NS_A" link set lo up
	ip -n "$SHIM_NS_B" link set lo up
	ip -n "$SHIM_NS_A" link add veth0 type veth peer name veth0 netns "$SHIM_NS_B"
	ip -n "$SHIM_NS_A" addr add $SHIM_A_IP/24 dev veth0
	ip -n "$SHIM_NS_B" addr add $SHIM_B_IP/24 dev veth0
	ip -n "$SHIM_NS_A" link set veth0 up
	ip -n "$SHIM_NS_B" link set veth0 up
	"$SHIM_IVSOCKD" --foreground --domain "lab=$SHIM_ENV_DIR/domain.sock,size=${SHIM_REGION:-128M},vectors=8${SHIM_DOMAIN_OPTS:+,$SHIM_DOMAIN_OPTS}" \
		--control "$SHIM_ENV_DIR/ctl.sock" >"$SHIM_ENV_DIR/ivsockd.log" 2>&1 &
	SHIM_PIDS+=($!)
	for _ in $(seq 100); do [ -S "$SHIM_ENV_DIR/domain.sock" ] && break; sleep 0.05; done
	shim_start_agent A
	shim_start_agent B
	# ready when the directory knows both addresses
	for _ in $(seq 200); do
		if shim_ctl vm list --json 2>/dev/null | grep -q "$SHIM_A_IP" &&
		   shim_ctl vm list --json 2>/dev/null | grep -q "$SHIM_B_IP"; then
			return 0
		fi
		sleep 0.05
	done
	echo "shim env: agents did not register"; cat "$SHIM_ENV_DIR"/*.log
	return 1
}
