#!/bin/bash
# SPDX-License-Identifier: MIT
# ivsockd against hostile domain members and local users (fake ivshmem
# clients, no VMs):
#
#   forge    a member writes another VM's mailbox (UNREGISTER) and rings the
#            daemon: not obeyed (the writer is known by its private doorbell)
#   admit    a process exec'd as "qemu-system-x86_64 -name vmA" by a uid
#            outside allow_users is refused; allowed, the same is named vmA
#   register a non-QEMU client that never REGISTERs is dropped in time
#   utf8     a VM writes invalid UTF-8 into its directory name: ivsockctl
#            --json still lists it (U+FFFD per bad byte) and its channel
#   control  idle control clients are closed; one uid cannot hold every slot;
#            a client that never reads a large reply is dropped, and while
#            its reply waits, others get EBUSY instead of more queued memory
#   emfile   with a tiny RLIMIT_NOFILE and clients that never read, ivsockd
#            neither spins nor floods its log, and serves again afterwards
set -eu
cd "$(dirname "$0")/../.."
O=${O:-build}
D=$PWD/$O/hostd/ivsockd
C=$PWD/$O/hostd/ivsockctl
F=$PWD/$O/tests/tools/ivshmem-fake-client
for b in "$D" "$C" "$F"; do
	[ -x "$b" ] || { echo "SKIP: $b not built (make first)"; exit 77; }
done
for t in jq python3 setpriv prlimit; do
	command -v $t >/dev/null || { echo "SKIP: $t missing"; exit 77; }
done
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (runs clients as nobody)"; exit 77; }

T=$(mktemp -d /tmp/hostd-hostile.XXXXXX)
chmod 755 "$T"
DPID=""
pids=()
cleanup() {
	for p in "${pids[@]}" $DPID; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$T"
}
trap cleanup EXIT
LOG=$T/daemon.log
fail() { echo "FAIL: $*"; echo "--- daemon log"; tail -n 40 "$LOG"; exit 1; }
ctl() { "$C" -s "$T/ctl.sock" "$@"; }
wait_for() { # FILE PATTERN [secs]
	local i
	for i in $(seq 1 $((${3:-10} * 10))); do
		grep -q -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	fail "timeout waiting for '$2' in $1"
}
start_daemon() { # LOG ARGS...
	LOG=$1; shift
	"$D" --foreground --log-level debug "$@" 2>"$LOG" &
	DPID=$!
	wait_for "$LOG" "ready:"
}
stop_daemon() { kill -TERM $DPID; local rc=0; wait $DPID || rc=$?; DPID=""; [ $rc = 0 ] || fail "ivsockd exit status $rc on SIGTERM"; }
field() { sed -n "s/.*$2=\\([^ ]*\\).*/\\1/p" "$1" | head -1; }

cat >"$T/conf" <<CONF
[daemon]
control = $T/ctl.sock
control_idle_timeout = 1s
control_clients_per_uid = 4
control_queued_max = 800K
[domain f]
socket = $T/f.sock
region_size = 16M
vectors = 2
[domain q]
socket = $T/q.sock
region_size = 4M
max_vms = 4
vectors = 1
socket_mode = 0666
[domain q2]
socket = $T/q2.sock
region_size = 4M
max_vms = 4
vectors = 1
socket_mode = 0666
allow_users = root nobody
[domain m]
socket = $T/m.sock
# ~900 channels of one VM (layout v4: a block of two 4K rings is 16K)
region_size = 32M
ring_size = 4K
vectors = 2
max_vms = 2
[domain r]
socket = $T/r.sock
region_size = 4M
max_vms = 4
vectors = 1
register_timeout = 1s
CONF
start_daemon "$T/daemon.log" --config "$T/conf"

echo "== forge: another VM's mailbox"
"$F" -v 2 -r victim,10.4.0.1 -s 600 "$T/f.sock" >"$T/v.out" &
pids+=($!)
wait_for "$T/v.out" "register status=0"
VVM=$(field "$T/v.out" vm)
"$F" -v 2 -r thief,10.4.0.2 -F "$VVM" "$T/f.sock" >"$T/th.out" || fail "thief: $(cat "$T/th.out")"
cat "$T/th.out" | grep forge
grep -q "forge ignored" "$T/th.out" || fail "the daemon obeyed a forged UNREGISTER"
ctl vm list --json | jq -e '.vms[] | select(.name=="victim") | .addresses == ["10.4.0.1"]' >/dev/null ||
	fail "victim lost its address: $(ctl vm list)"
# The victim's own requests are still served.
"$F" -v 2 -r victim2,10.4.0.3 -p "$T/f.sock" | grep -q "ping status=0" || fail "mailbox broken"

echo "== admit: credentials, not the command line"
rc=0
setpriv --reuid=nobody --regid=nogroup --clear-groups \
	bash -c "exec -a qemu-system-x86_64 $F -v 1 -- $T/q.sock -name vmA" >"$T/q.out" 2>&1 || rc=$?
[ $rc != 0 ] || fail "a uid outside allow_users was admitted: $(cat "$T/q.out")"
grep -q "refusing client pid [0-9]* uid 65534 .*allow_users" "$LOG" || fail "refusal not logged"
ctl vm list --json | jq -e '.vms[] | select(.name=="vmA")' >/dev/null && fail "vmA listed"
setpriv --reuid=nobody --regid=nogroup --clear-groups \
	bash -c "exec -a qemu-system-x86_64 $F -v 1 -- $T/q2.sock -name vmA" >"$T/q2.out" 2>&1 ||
	fail "an allowed uid was refused: $(cat "$T/q2.out")"
grep -q "name=vmA " "$T/q2.out" || fail "admitted client not named from its command line: $(cat "$T/q2.out")"

echo "== register: a client that never registers is dropped"
"$F" -v 1 -r ok,10.4.0.7 -s 600 "$T/r.sock" >"$T/ok.out" &
OK=$!; pids+=($OK)
wait_for "$T/ok.out" "register status=0"
"$F" -v 1 -s 60 "$T/r.sock" >"$T/silent.out" 2>&1 &
S=$!; pids+=($S)
wait_for "$T/silent.out" "own_id="
SPEER=$(field "$T/silent.out" own_id)
wait_for "$LOG" "domain r: peer $SPEER (pid [0-9]*) did not register within 1000 ms"
wait_for "$T/ok.out" "^disconnect $SPEER\$"
rc=0; wait $S || rc=$?
[ $rc != 0 ] || fail "the silent client was not disconnected"
kill -0 $OK || fail "the registered client was dropped"
[ "$(ctl domain list --json | jq '.domains[] | select(.name=="r") | .peer_ids_in_use')" = 2 ] ||
	fail "peer id of the dropped client not released"

echo "== utf8: invalid bytes in a VM name"
"$F" -v 2 -r u8,10.4.0.5 -N 76c3e9ff41 -C 77 -s 600 "$T/f.sock" >"$T/u.out" &
pids+=($!)
wait_for "$T/u.out" "^channel "
want=$(printf 'v\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdA')
ctl vm list --json >"$T/vms.json"
jq -e . "$T/vms.json" >/dev/null || fail "vm list is not valid JSON"
got=$(jq -r --arg w "$want" '.vms[] | select(.name==$w) | .name' "$T/vms.json")
[ "$got" = "$want" ] || fail "VM with an invalid name hidden or mangled: $(cat "$T/vms.json")"
jq -e '.vms | length >= 3' "$T/vms.json" >/dev/null || fail "other VMs missing"
ctl channels --json | jq -e --arg w "$want" '.channels[] | select(.ends[0].vm==$w and .ends[0].tx_bytes==77)' >/dev/null ||
	fail "its channel is hidden: $(ctl channels --json)"
ctl vm show "$want" --json | jq -e '.vm.channels == 1' >/dev/null || fail "vm show by the escaped name"
ctl vm list >/dev/null || fail "table output"

echo "== control: idle clients closed, per-uid cap"
python3 - "$T/ctl.sock" <<'PY' || fail "control limits"
import socket, sys, time, select
path = sys.argv[1]
def conn():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s
def closed(s, secs):
    # True once the daemon closed s (EOF), within secs
    end = time.time() + secs
    while time.time() < end:
        r, _, _ = select.select([s], [], [], 0.1)
        if r and s.recv(1) == b'':
            return True
    return False
held = [conn() for _ in range(4)]
fifth = conn()
assert closed(fifth, 5), "a fifth connection of one uid was kept"
# A client that sends half a request and then nothing is closed too.
held[0].send(b'\x00\x01')
for s in held:
    assert closed(s, 10), "an idle control client was never closed"
print("control limits ok")
PY
ctl vm list >/dev/null || fail "control socket unusable after the limits"
# ~1000 channels: one page of ivsockctl's listing, ~620 KiB on the wire
# (1.3 MiB as ivsockctl prints it), more than a socket buffer holds;
# control_queued_max (800K) holds the unsent part of one page, not that
# and the unsent part of another (socket buffers take ~100-160 KiB).
"$F" -v 2 -r many,10.4.0.11 -M 5000 -s 600 "$T/m.sock" >"$T/m.out" &
pids+=($!)
wait_for "$T/m.out" "^channels "
python3 - "$T/ctl.sock" "$C" <<'PY' || fail "unread replies"
import socket, struct, subprocess, sys, time, select
path, ctlbin = sys.argv[1], sys.argv[2]
# control: with nothing unread, the large reply is served
r = subprocess.run([ctlbin, '-s', path, 'channels', '--json'], capture_output=True)
assert r.returncode == 0 and len(r.stdout) > 300000, \
    "large reply refused with nothing queued: rc=%d len=%d %r" % (r.returncode, len(r.stdout), r.stderr[:300])
print("large listing: %d bytes" % len(r.stdout))
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(path)
# CHANNELS (0x104), then never read the reply
s.send(struct.pack('<IHHIIiI', 0x4d535649, 1, 0x104, 0, 1, 0, 0))
time.sleep(0.3)
r = subprocess.run([ctlbin, '-s', path, 'channels', '--json'], capture_output=True)
assert r.returncode != 0 and b'busy' in r.stderr.lower(), \
    "second large reply queued while the first is unread: rc=%d %r" % (r.returncode, r.stderr)
end = time.time() + 10
while time.time() < end:
    # the non-reader is dropped at the idle timeout (its socket gets EOF
    # after the part of the reply already in its buffer)
    try:
        if s.recv(65536, socket.MSG_DONTWAIT) == b'':
            break
    except BlockingIOError:
        time.sleep(0.1)
else:
    raise SystemExit("a client that never read its reply was kept")
r = subprocess.run([ctlbin, '-s', path, 'channels', '--json'], capture_output=True)
assert r.returncode == 0 and len(r.stdout) > 300000, "large reply refused after the drop: rc=%d len=%d %r" % (r.returncode, len(r.stdout), r.stderr[:300])
print("unread replies ok")
PY
stop_daemon

echo "== emfile: tiny descriptor limit, clients that never read"
start_daemon "$T/daemon2.log" --domain e="$T/e.sock",size=16M,vectors=2,max_vms=16 --control "$T/ctl.sock"
prlimit --pid $DPID --nofile=40:40
for i in $(seq 1 6); do "$F" -H 600 "$T/e.sock" >/dev/null 2>&1 & pids+=($!); done
# Every cycle is announced to the holders (two eventfds and a disconnect
# each): their socket buffers fill, then queued descriptors pile up.
for i in $(seq 1 40); do "$F" -v 2 -q -c 20 "$T/e.sock" >/dev/null 2>&1 || true; done
for i in $(seq 1 30); do "$F" -H 600 "$T/e.sock" >/dev/null 2>&1 & pids+=($!); done
sleep 1
kill -0 $DPID || fail "ivsockd died at EMFILE"
# The flood is of complaints: the cycles that got through log three info
# lines each (joined, gone, reclaimed), as many as the timing lets through.
lines=$(grep -c -E " (warning|error|crit): " "$LOG" || true)
echo "daemon log: $(wc -l <"$LOG") lines, $lines warnings or errors"
grep -q "Too many open files" "$LOG" || fail "the descriptor limit was never reached: test is void"
[ "$lines" -lt 400 ] || fail "log flood at EMFILE ($lines warnings)"
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
pids=()
ok=0
for i in $(seq 1 50); do
	if "$F" -v 2 -r back,10.4.0.8 -p "$T/e.sock" 2>/dev/null | grep -q "ping status=0"; then ok=1; break; fi
	sleep 0.2
done
[ $ok = 1 ] || fail "not serving after the descriptor storm"
stop_daemon
echo "PASS"
