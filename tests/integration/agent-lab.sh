#!/bin/bash
# SPDX-License-Identifier: MIT
# ivsock-agent (server backend) in a two-namespace lab with a real ivsockd:
# registration, a checksummed 64 MiB stream from A to B through the rings,
# kill -9 of the sender mid-stream (B sees a reset, A's agent reclaims the
# channel), and a stream while ivsockd is frozen (agents notice, data flows).
#
#   host netns:  ivsockd --domain lab=$T/lab.sock        (region on a memfd)
#                   |  ivshmem protocol (UNIX socket)  |
#   netns A: ivsock-agent --server ...   netns B: ivsock-agent --server ...
#            ivsock-stream send                    ivsock-stream listen
#            veth 10.98.$N.1/24  <------------->  veth 10.98.$N.2/24
set -euo pipefail
cd "$(dirname "$0")/../.."
O=${O:-build}
IVSOCKD=$O/hostd/ivsockd
IVSOCKCTL=$O/hostd/ivsockctl
AGENT=$O/guestdrv/agent/ivsock-agent
STREAM=$O/tests/tools/ivsock-stream

skip() { echo "SKIP: $*"; exit 77; }
[ -x "$IVSOCKD" ] && [ -x "$IVSOCKCTL" ] || skip "ivsockd/ivsockctl not built"
[ -x "$AGENT" ] && [ -x "$STREAM" ] || skip "ivsock-agent/ivsock-stream not built"
[ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces)"
command -v jq >/dev/null || skip "jq missing"
ip netns add "ivs-probe-$$" 2>/dev/null || skip "cannot create network namespaces"
ip netns del "ivs-probe-$$"

T=$(mktemp -d /tmp/ivsock-agent-lab.XXXXXX)
N=$(( $$ % 200 + 20 ))
NA=ivsA$$ NB=ivsB$$ NC=ivsC$$
IPA=10.98.$N.1 IPB=10.98.$N.2
PIDS=()

cleanup() {
	local rc=$?
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	kill -CONT "${DPID:-0}" 2>/dev/null || true
	wait 2>/dev/null || true
	ip netns del "$NA" 2>/dev/null || true
	ip netns del "$NB" 2>/dev/null || true
	ip netns del "$NC" 2>/dev/null || true
	if [ $rc -ne 0 ]; then
		for f in "$T"/*.log "$T"/*.out; do
			[ -f "$f" ] && { echo "--- $f"; tail -n 20 "$f"; }
		done
	fi
	rm -rf "$T"
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; exit 1; }

# wait_for SECONDS CMD...: poll until CMD succeeds (bounded).
wait_for() {
	local end=$((SECONDS + $1)); shift
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.1
	done
}

ip netns add "$NA"
ip netns add "$NB"
ip link add "va$$" type veth peer name "vb$$"
ip link set "va$$" netns "$NA"
ip link set "vb$$" netns "$NB"
ip -n "$NA" addr add "$IPA/24" dev "va$$"
ip -n "$NB" addr add "$IPB/24" dev "vb$$"
for ns in "$NA" "$NB"; do
	ip -n "$ns" link set lo up
done
ip -n "$NA" link set "va$$" up
ip -n "$NB" link set "vb$$" up

"$IVSOCKD" --foreground --domain "lab=$T/lab.sock,size=64M,vectors=4" \
	--control "$T/ctl.sock" >"$T/ivsockd.log" 2>&1 &
DPID=$!
PIDS+=("$DPID")
wait_for 10 test -S "$T/ctl.sock" || fail "ivsockd did not start"

ip netns exec "$NA" "$AGENT" -f -v --server "$T/lab.sock" --hostname lab-a \
	>"$T/agent-a.log" 2>&1 &
PIDS+=($!)
ip netns exec "$NB" "$AGENT" -f -v --server "$T/lab.sock" --hostname lab-b \
	>"$T/agent-b.log" 2>&1 &
PIDS+=($!)

vm_ips() { # NAME -> its addresses, comma-separated
	"$IVSOCKCTL" -s "$T/ctl.sock" vm list --json |
		jq -r --arg n "$1" '.vms[] | select(.name == $n and .state == "alive") |
			.addresses | join(",")'
}
registered() { [ "$(vm_ips "$1")" = "$2" ]; }
wait_for 10 registered lab-a "$IPA" || fail "lab-a not registered with $IPA: $(vm_ips lab-a)"
wait_for 10 registered lab-b "$IPB" || fail "lab-b not registered with $IPB: $(vm_ips lab-b)"
echo "ok: ivsockctl vm list shows lab-a=$IPA lab-b=$IPB"

# An address added later is registered too (rtnetlink -> REGISTER again).
ip -n "$NA" addr add "10.98.$N.11/24" dev "va$$"
wait_for 10 registered lab-a "$IPA,10.98.$N.11" ||
	fail "new address not registered: $(vm_ips lab-a)"
ip -n "$NA" addr del "10.98.$N.11/24" dev "va$$"
wait_for 10 registered lab-a "$IPA" || fail "removed address still registered: $(vm_ips lab-a)"
echo "ok: address changes re-registered"

status() { ip netns exec "$1" "$AGENT" --status; }
# Every local user is admitted by default (the agent brokers the tables):
# uid 65534 gets a status, listens, and is accelerated.
ip netns exec "$NB" setpriv --reuid=65534 --regid=65534 --clear-groups \
	"$AGENT" --status >"$T/nobody-status.out" 2>&1 || fail "uid 65534 got no status: $(cat "$T/nobody-status.out")"
jq -e '.agent.registered' "$T/nobody-status.out" >/dev/null || fail "uid 65534's status: $(cat "$T/nobody-status.out")"
# The data path as uid 65534: shim-stream under the shim (the broker's
# client), a root client in A checks every byte of the echo.
SHIM_LIB=$O/preload/libivsock.so SHIM_TOOL=$O/preload/tests/shim-stream
[ -f "$SHIM_LIB" ] && [ -x "$SHIM_TOOL" ] || fail "$SHIM_LIB / $SHIM_TOOL not built"
case $SHIM_LIB in /*) ;; *) SHIM_LIB=$PWD/$SHIM_LIB ;; esac
chmod 0755 "$T"
ip netns exec "$NB" setpriv --reuid=65534 --regid=65534 --clear-groups \
	env LD_PRELOAD="$SHIM_LIB" IVSOCK_STATS=1 "$SHIM_TOOL" server 7009 1 >"$T/nobody.out" 2>&1 &
RPID=$!
PIDS+=("$RPID")
wait_for 10 grep -q "^listening" "$T/nobody.out" || fail "uid 65534 could not listen: $(cat "$T/nobody.out")"
ip netns exec "$NA" env LD_PRELOAD="$SHIM_LIB" IVSOCK_STATS=1 "$SHIM_TOOL" client "$IPB" 7009 $((4 << 20)) 1 \
	>"$T/send-nobody.out" 2>&1 || fail "client of uid 65534's server failed: $(cat "$T/send-nobody.out")"
wait "$RPID" || fail "server of uid 65534 failed: $(cat "$T/nobody.out")"
grep -q "accelerated_accept=1 listeners_registered=1 " "$T/nobody.out" ||
	fail "uid 65534's server not accelerated: $(cat "$T/nobody.out")"
grep -q " ring_tx_bytes=$((4 << 20)) ring_rx_bytes=$((4 << 20)) " "$T/send-nobody.out" ||
	fail "echo of uid 65534's server not on the rings: $(cat "$T/send-nobody.out")"
echo "ok: uid 65534 admitted by default (status; listener and 4 MiB echoed on the rings, every byte checked)"

# A third simulated VM (no addresses) whose agent admits only group 65534
# (--allow-group; --group is the old name) and user 65532 (--allow-user).
ip netns add "$NC"
ip -n "$NC" link set lo up
ip netns exec "$NC" "$AGENT" -f --server "$T/lab.sock" --hostname lab-c \
	--listen "@ivsock-agent-lab-$$" --allow-group 65534 --allow-user 65532 >"$T/agent-c.log" 2>&1 &
PIDS+=($!)
status_as() { # UID GID: lab-c's status as that user
	ip netns exec "$NC" setpriv --reuid="$1" --regid="$2" --clear-groups \
		"$AGENT" --status --listen "@ivsock-agent-lab-$$"
}
nobody_status() { status_as 65534 65534; }
wait_for 10 nobody_status || fail "--allow-group 65534 did not admit uid 65534"
[ "$(nobody_status | jq '.agent.addrs | length')" -eq 0 ] || fail "lab-c has addresses"
status_as 65532 65532 >/dev/null 2>&1 || fail "--allow-user 65532 did not admit uid 65532"
set +e
status_as 65533 65533 >"$T/c-65533.out" 2>&1
r=$?
set -e
[ $r -eq 1 ] || fail "uid 65533 (neither listed nor in group 65534) got a status from lab-c: $(cat "$T/c-65533.out")"
[ "$(ip netns exec "$NC" "$AGENT" --status --listen "@ivsock-agent-lab-$$" | jq .admission.refused)" -ge 1 ] ||
	fail "lab-c did not count the refusal"
echo "ok: --allow-group admits its members, --allow-user its users, and refuses anyone else"

# Garbage on the agent socket: each bad request costs its sender the
# connection, never the agent.
ip netns exec "$NB" python3 - <<'PY' || fail "garbage test client failed"
import socket, struct
def conn():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect("\0ivsock-agent")
    s.settimeout(5)
    return s
hdr = lambda magic, ver, typ, ln, seq=1, st=0, res=0: struct.pack("<IHHIIiI", magic, ver, typ, ln, seq, st, res)
M = 0x4d535649
cases = [b"", b"x" * 7, hdr(0xdead, 1, 5, 0), hdr(M, 2, 5, 0), hdr(M, 1, 0, 0),
         hdr(M, 1, 5, 10), hdr(M, 1, 1, 0), hdr(M, 1, 3, 2) + b"ab", hdr(M, 1, 5, 0, res=1),
         b"\xff" * 70000]
for c in cases:
    s = conn()
    try:
        s.send(c)
        r = s.recv(100000)
    except OSError:
        r = b""
    assert r == b"", (c[:24], r[:24])   # disconnected without an answer
    s.close()
s = conn()                              # unknown type: answered -EOPNOTSUPP
s.send(hdr(M, 1, 99, 0, seq=7))         # (before HELLO; reply: 99, or 100 as a broker reply)
r = s.recv(1000)
magic, ver, typ, ln, seq, st, res = struct.unpack("<IHHIIiI", r[:24])
assert typ in (99, 100) and (seq, st) == (7, -95), (typ, seq, st)
PY
status "$NB" | jq -e '.agent.registered' >/dev/null || fail "agent B unwell after garbage"
echo "ok: malformed requests disconnect their sender, the agent keeps serving"

[ "$(status "$NA" | jq -r .agent.backend)" = server ] || fail "agent A status"
[ "$(status "$NB" | jq -r .agent.registered)" = true ] || fail "agent B not registered"

# --- 1. 64 MiB from A to B, checksummed ---
ip netns exec "$NB" "$STREAM" listen 7001 >"$T/recv1.out" 2>&1 &
RPID=$!
PIDS+=("$RPID")
wait_for 10 grep -q LISTENING "$T/recv1.out" || fail "receiver did not start"
ip netns exec "$NA" "$STREAM" send "$IPB" 7001 $((64 << 20)) >"$T/send1.out" 2>&1 ||
	fail "sender failed: $(cat "$T/send1.out")"
wait "$RPID" || fail "receiver failed: $(cat "$T/recv1.out")"
sent=$(sed -n 's/^SENT bytes=\([0-9]*\) checksum=\([0-9a-f]*\)$/\1 \2/p' "$T/send1.out")
got=$(sed -n 's/^OK bytes=\([0-9]*\) checksum=\([0-9a-f]*\)$/\1 \2/p' "$T/recv1.out")
[ -n "$got" ] && [ "$sent" = "$got" ] || fail "checksums differ: sent '$sent' got '$got'"
echo "ok: 64 MiB A -> B through the rings ($got)"

# --- 2. kill -9 the sender mid-stream ---
ip netns exec "$NB" "$STREAM" listen 7002 >"$T/recv2.out" 2>&1 &
RPID=$!
PIDS+=("$RPID")
wait_for 10 grep -q LISTENING "$T/recv2.out" || fail "receiver 2 did not start"
ip netns exec "$NA" "$STREAM" send "$IPB" 7002 $((1 << 40)) >"$T/send2.out" 2>&1 &
SPID=$!
PIDS+=("$SPID")
chan_up() { [ "$(status "$NA" | jq '[.channels[] | select(.state == "connected")] | length')" -ge 1 ]; }
wait_for 20 chan_up || fail "no connected channel while streaming"
kill -9 "$SPID"
set +e
wait "$RPID"
rrc=$?
set -e
grep -q '^RESET after' "$T/recv2.out" || fail "receiver did not see a reset (rc $rrc): $(cat "$T/recv2.out")"
[ $rrc -eq 3 ] || fail "receiver exit $rrc, expected 3 (reset)"
no_channels() { [ "$("$IVSOCKCTL" -s "$T/ctl.sock" channels --json | jq '.channels | length')" -eq 0 ]; }
wait_for 10 no_channels || fail "channels left: $("$IVSOCKCTL" -s "$T/ctl.sock" channels --json)"
pool() { "$IVSOCKCTL" -s "$T/ctl.sock" vm show "$1" --json | jq .vm.rings_used; }
[ "$(pool lab-a)" -eq 0 ] || fail "lab-a ring pool not empty: $(pool lab-a)"
[ "$(status "$NA" | jq .ring_pool.used)" -eq 0 ] || fail "agent A sees rings in use"
grep -q 'released 1 channels' "$T/agent-a.log" || fail "agent A did not release the channel"
echo "ok: kill -9 of the sender -> reset at the receiver, channel and rings reclaimed"

# --- 3. ivsockd frozen: agents notice, channels still work ---
kill -STOP "$DPID"
wait_for 15 grep -q "heartbeat stopped" "$T/agent-a.log" || fail "agent A did not notice ivsockd stop"
ip netns exec "$NB" "$STREAM" --spin 0 listen 7003 >"$T/recv3.out" 2>&1 &
RPID=$!
PIDS+=("$RPID")
wait_for 10 grep -q LISTENING "$T/recv3.out" || fail "receiver 3 did not start"
ip netns exec "$NA" "$STREAM" --spin 0 send "$IPB" 7003 $((8 << 20)) >"$T/send3.out" 2>&1 ||
	fail "sender 3 failed: $(cat "$T/send3.out")"
wait "$RPID" || fail "receiver 3 failed: $(cat "$T/recv3.out")"
grep -q '^OK bytes=8388608 ' "$T/recv3.out" || fail "stream 3: $(cat "$T/recv3.out")"
# Without spinning every empty/full ring sleeps: doorbells must have woken both.
woken() { sed -n 's/^STATS .*woken=\([0-9]*\).*/\1/p' "$1"; }
[ "$(woken "$T/recv3.out")" -gt 0 ] || fail "receiver never woken by a doorbell: $(cat "$T/recv3.out")"
# The sender sleeps only if it ever finds the ring full, which depends on
# scheduling; whenever anyone slept, a doorbell (not the timeout) woke it.
tmo() { sed -n 's/^STATS .*timeouts=\([0-9]*\).*/\1/p' "$1"; }
[ "$(tmo "$T/recv3.out")" -eq 0 ] || fail "receiver woken by its timeout, not a doorbell: $(cat "$T/recv3.out")"
[ "$(tmo "$T/send3.out")" -eq 0 ] || fail "sender woken by its timeout, not a doorbell: $(cat "$T/send3.out")"
echo "stream 3: $(grep STATS "$T/send3.out") / $(grep STATS "$T/recv3.out")"
kill -CONT "$DPID"
wait_for 15 grep -q "heartbeat moves again" "$T/agent-a.log" || fail "agent A did not see ivsockd return"
echo "ok: 8 MiB while ivsockd was frozen; agents noticed it stop and come back"

# Both agents still healthy; they stop cleanly on SIGTERM (and, in a
# sanitizer build, without reports).
for p in "${PIDS[@]:1:2}"; do kill -0 "$p" || fail "an agent died"; done
for p in "${PIDS[@]:1:2}"; do
	kill -TERM "$p"
	wait "$p" || fail "agent $p exited with $? on SIGTERM"
done
if grep -E "runtime error|AddressSanitizer|LeakSanitizer" "$T"/*.log "$T"/*.out; then
	fail "sanitizer reports"
fi
echo "PASS"
