#!/bin/bash
# SPDX-License-Identifier: MIT
#
# LONG VM TEST (about a minute): ivsock.ko in two real QEMU/TCG guests.
#
#      host                      ivshmem server ($IVSHMEM_SERVER_CMD)
#        |                         |  UNIX socket $VM_DIR/ivshmem.sock
#        |             +-----------+-----------+
#        |      guest "a" (peer 0)       guest "b" (peer 1)
#        |      ivs0: ivshmem-doorbell   ivs0: ivshmem-doorbell
#        +-QMP--+                        +--QMP (device_del ivs0,
#                                               chardev-remove ivs)
#
# Both guests load ivsock.ko and run devcheck (tests/vm/devcheck.c) from
# driver-guest.sh: INFO, the host's pattern through mmap, self doorbells,
# ioctl errors, a doorbell ping-pong on every vector between the guests
# (ioctl and mapped register), unbind/close; then the API 2 windows
# (devcheck windows: argument checks, WIN_INFO, WIN_BUSY, a child dropped
# to uid/gid 65534 that holds only window fds and must fail at everything
# outside them, WIN_REVOKE under its mappings and its forked worker's, a
# revoke racing mmap/fault). Then "a" unbinds the driver from sysfs and "b"
# is hot-unplugged by QMP device_del, each while a process holds the
# device and two windows mapped and polled (expects POLLHUP, ENODEV,
# SIGBUS), "a" checks that rmmod is refused while a window lives, and both
# rmmod. The serial logs must show no WARNING/BUG/Oops.
#
# Environment:
#   IVSHMEM_SERVER_CMD  the ivshmem server, a command line where {SOCK},
#                       {SIZE}, {VECTORS} and {SHM} are substituted.
#                       Default, first that exists:
#                       1. ivsockd ($IVSOCKD, default build/hostd/ivsockd):
#                          "$IVSOCKD --foreground --domain drvtest={SOCK},
#                           size={SIZE},vectors={VECTORS}
#                           --control {SOCK}.ctl"
#                       2. the throwaway dev server $IVSHMEM_DEV_SERVER
#                          (default /tmp/ivshmem-dev-server.py, kept
#                          outside the tree): "python3 ... -S {SOCK}
#                          -l {SIZE} -n {VECTORS} --shm {SHM}"
#                       else the test is skipped (77)
#   IVSHMEM_SERVER      "ivsockd" or "dev": pick one of the defaults
#   IVSHMEM_SHM_PATH    host file backing the region, into which the host
#                       writes a pattern the guests must see (default
#                       $VM_DIR/shm when the command uses {SHM}; empty:
#                       skip that check)
#   EXPECT_PEERS        expected peer IDs of a and b ("0 1" for the dev
#                       server; empty: not checked)
#   TEST_SIZE           region size, a power of two (default 64 MiB with
#                       ivsockd, whose tables need room; else 1 MiB)
#   TEST_VECTORS        MSI-X vectors per guest (default 4)
#   TEST_SCRATCH        region offset of the 4 KiB page the guests use to
#                       meet (default: the last page; it is overwritten)
#   KMOD_DEBUG          build ivsock.ko with DEBUG=1 (default 1)
#   KEEP                keep $VM_DIR (logs) even on success
#   VM_KVER, VM_DIR...  see lib.sh
# Exit: 0 pass, 1 fail, 77 skip (QEMU, guest kernel, headers or server
# missing).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$here/lib.sh"

vm_prereqs --kmod || exit 77
command -v python3 >/dev/null || { echo "SKIP: python3 missing" >&2; exit 77; }

TEST_VECTORS=${TEST_VECTORS:-4}
KMOD_DEBUG=${KMOD_DEBUG:-1}
IVSOCKD=${IVSOCKD:-$top/build/hostd/ivsockd}
IVSHMEM_DEV_SERVER=${IVSHMEM_DEV_SERVER:-/tmp/ivshmem-dev-server.py}
if [ -z "${IVSHMEM_SERVER_CMD:-}" ]; then
	server=${IVSHMEM_SERVER:-}
	if [ -z "$server" ]; then
		if [ -x "$IVSOCKD" ]; then
			server=ivsockd
		elif [ -f "$IVSHMEM_DEV_SERVER" ]; then
			server=dev
		fi
	fi
	case $server in
	ivsockd)
		[ -x "$IVSOCKD" ] || { echo "SKIP: no $IVSOCKD" >&2; exit 77; }
		IVSHMEM_SERVER_CMD="$IVSOCKD --foreground --domain drvtest={SOCK},size={SIZE},vectors={VECTORS} --control {SOCK}.ctl"
		TEST_SIZE=${TEST_SIZE:-67108864} ;;
	dev)
		[ -f "$IVSHMEM_DEV_SERVER" ] ||
			{ echo "SKIP: no $IVSHMEM_DEV_SERVER" >&2; exit 77; }
		IVSHMEM_SERVER_CMD="python3 $IVSHMEM_DEV_SERVER -S {SOCK} -l {SIZE} -n {VECTORS} --shm {SHM}"
		EXPECT_PEERS=${EXPECT_PEERS-0 1} ;;
	*)
		echo "SKIP: no ivshmem server (build ivsockd or set IVSHMEM_SERVER_CMD)" >&2
		exit 77 ;;
	esac
fi
TEST_SIZE=${TEST_SIZE:-1048576}
EXPECT_PEERS=${EXPECT_PEERS:-}
HOSTPAT=0x10000

vm_init
t_start=$SECONDS
echo "test-driver: workdir $VM_DIR"

make -s -C "$top/guestdrv/kmod" KVER="$VM_KVER" DEBUG="$KMOD_DEBUG" WERROR=1 >"$VM_DIR/kmod.log" 2>&1 ||
	{ cat "$VM_DIR/kmod.log"; echo "FAIL: ivsock.ko build"; exit 1; }
gcc -static -O2 -Wall -Wextra -Werror -I"$top/protocol/include" \
	-o "$VM_DIR/devcheck" "$here/devcheck.c"
VM_MODULES="" "$here/mkinitramfs.sh" "$VM_DIR/initrd.gz" \
	"$top/guestdrv/kmod/ivsock.ko:/ivsock.ko" \
	"$VM_DIR/devcheck:/devcheck" \
	"$here/driver-guest.sh:/test.sh"
echo "test-driver: built module, devcheck, initramfs in $((SECONDS - t_start)) s"

sock=$VM_DIR/ivshmem.sock
shm=${IVSHMEM_SHM_PATH:-}
case $IVSHMEM_SERVER_CMD in *'{SHM}'*) shm=${shm:-$VM_DIR/shm} ;; esac
cmd=${IVSHMEM_SERVER_CMD//\{SOCK\}/$sock}
cmd=${cmd//\{SIZE\}/$TEST_SIZE}
cmd=${cmd//\{VECTORS\}/$TEST_VECTORS}
cmd=${cmd//\{SHM\}/$shm}
echo "test-driver: server: $cmd"
# shellcheck disable=SC2086
vm_bg server $cmd
vm_wait_unix "$sock" 20 || { cat "$VM_DIR/server.out"; echo "FAIL: server socket"; exit 1; }

hostpat_arg=""
if [ -n "$shm" ]; then
	python3 - "$shm" "$HOSTPAT" <<'PY'
import sys
off = int(sys.argv[2], 0)
with open(sys.argv[1], "r+b") as f:
    f.seek(off)
    f.write(bytes((i * 7 + 0xff * 13 + 1) & 0xff for i in range(4096)))
PY
	hostpat_arg="ivsock.hostpat=$HOSTPAT"
fi

nonce=$((RANDOM * 32768 + RANDOM))
common="ivsock.size=$TEST_SIZE ivsock.vectors=$TEST_VECTORS ivsock.nonce=$nonce $hostpat_arg"
[ -z "${TEST_SCRATCH:-}" ] || common="$common ivsock.scratch=$TEST_SCRATCH"
# shellcheck disable=SC2086 # split on purpose
set -- $EXPECT_PEERS
peer_a=${1:+ivsock.peer=$1}
peer_b=${2:+ivsock.peer=$2}

t_boot=$SECONDS
vm_start a "$VM_DIR/a.log" "$VM_DIR/initrd.gz" --ivshmem "$sock,$TEST_VECTORS" \
	--qmp "$VM_DIR/a.qmp" --append "ivsock.role=a ivsock.hold=1 $common $peer_a"
# Let a take the first peer ID before b connects. Both guests hold after
# their marker (QMP must outlive b's test; a must not leave the server
# before b's chardev is gone, see vm_device_del); vm_cleanup stops them.
sleep 1
vm_start b "$VM_DIR/b.log" "$VM_DIR/initrd.gz" --ivshmem "$sock,$TEST_VECTORS" \
	--qmp "$VM_DIR/b.qmp" --append "ivsock.role=b ivsock.hold=1 $common $peer_b"

rc=0
if vm_wait_marker "$VM_DIR/b.log" 240 IVSOCK-UNPLUG-READY; then
	t_unplug=$SECONDS
	vm_device_del "$VM_DIR/b.qmp" ivs0 ivs >/dev/null || rc=1
else
	echo "test-driver: b never got ready for unplug"
	rc=1
fi
for g in a b; do
	if ! vm_wait_marker "$VM_DIR/$g.log" 240; then
		echo "FAIL: guest $g: no result marker (timeout)"
		rc=1
	fi
done
echo "test-driver: guests finished $((SECONDS - t_boot)) s after boot" \
	"(unplug issued at +$((${t_unplug:-$SECONDS} - t_boot)) s)"
vm_cleanup

for g in a b; do
	grep -a -E '^(ok|FAIL) |^== |^info:' "$VM_DIR/$g.log" | sed "s/^/[$g] /"
	r=$(vm_result "$VM_DIR/$g.log") || true
	[ "$r" = 0 ] || { echo "FAIL: guest $g rc=$r (log $VM_DIR/$g.log)"; rc=1; }
	vm_log_clean "$VM_DIR/$g.log" ||
		{ echo "FAIL: guest $g: kernel warnings (log $VM_DIR/$g.log)"; rc=1; }
done
if [ $rc = 0 ]; then
	echo "PASS: test-driver ($((SECONDS - t_start)) s)"
	[ -n "${KEEP:-}" ] || rm -rf "$VM_DIR"
else
	echo "FAIL: test-driver, logs kept in $VM_DIR"
	trap - EXIT
fi
exit $rc
