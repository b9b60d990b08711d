# SPDX-License-Identifier: MIT
# shellcheck shell=bash
#
# Real-VM test helpers: boot QEMU/TCG guests on a busybox initramfs (see
# mkinitramfs.sh), attach them to an ivshmem server and to each other, wait
# for the guest's result marker, poke QEMU over QMP, and clean up.
# Source it from bash:  . "$(dirname "$0")/lib.sh"  (qemu-guest.sh wraps
# vm_start for one guest booted by hand).
#
# Environment (all optional):
#   VM_KVER      guest kernel version       (default: newest kernel in /boot with modules)
#   VM_KERNEL    guest kernel image         (default /boot/vmlinuz-$VM_KVER)
#   VM_MEM       guest RAM in MiB           (default 256)
#   VM_QEMU      QEMU binary                (default qemu-system-x86_64)
#   VM_DIR       scratch dir for pids, sockets, logs (default: a new
#                /var/tmp/ivsock-vmtest.XXXXXX made by vm_init; not /tmp,
#                which other suites here sweep while guests still run)
#
# Functions:
#   vm_init                 create $VM_DIR, install an EXIT trap (vm_cleanup)
#   vm_prereqs [--kmod]     return 77 (skip) naming what is missing: QEMU,
#                           guest kernel, busybox, and with --kmod the
#                           kernel headers /lib/modules/$VM_KVER/build
#   vm_start NAME LOG INITRD [options]
#                           boot a guest in the background; its serial
#                           console goes to LOG; pid in $VM_DIR/NAME.pid.
#       --ivshmem SOCK[,VECTORS]  ivshmem-doorbell on server socket SOCK
#                           (device id "ivs0", chardev id "ivs";
#                           VECTORS default 2)
#       --net-listen PATH   virtio-net over -netdev stream, listening side
#                           (start it first); --net-connect PATH the other
#       --append STR        extra kernel command line (e.g. ivsock.ip=...)
#       --qmp SOCK          QMP monitor on UNIX socket SOCK
#       --uuid UUID         (default: random); -name is always NAME
#                           (the host daemon identifies VMs by both);
#                           the NIC's MAC is derived from NAME
#   vm_wait_marker LOG TIMEOUT [PATTERN]
#                           wait until LOG contains PATTERN (default the
#                           final "IVSOCK-TEST-DONE rc=N" marker); returns
#                           0 when found, 124 on timeout
#   vm_result LOG           print N of "IVSOCK-TEST-DONE rc=N"; return N
#                           (125 if the marker is missing)
#   vm_log_clean LOG        return 1 and print the lines if LOG shows a
#                           kernel WARNING, BUG, Oops or call trace
#   vm_qmp SOCK JSON        run one QMP command, print the reply
#   vm_device_del QMP ID [CHARDEV]
#                           hot-unplug device ID, wait (60 s) until QEMU
#                           has dropped it, then remove CHARDEV (as libvirt
#                           does). Seen here: QEMU 7.2 segfaulted when a
#                           peer left the server right after another
#                           guest's ivshmem-doorbell was unplugged; keep
#                           the other peers connected until this returns
#   vm_wait_unix SOCK TIMEOUT
#                           wait until a UNIX socket path exists
#   vm_kill NAME            stop one guest (SIGTERM, then SIGKILL)
#   vm_cleanup              stop every guest and background job started
#                           through vm_start / vm_bg
#   vm_bg NAME CMD...       run CMD in the background (e.g. the ivshmem
#                           server), output in $VM_DIR/NAME.out, killed by
#                           vm_cleanup
#
# The guest side of the contract lives in mkinitramfs.sh's /init: it prints
# "IVSOCK-TEST-DONE rc=N" after /test.sh and powers off.

# Newest installed Debian kernel with modules (the guest kernel; not uname -r).
VM_KVER=${VM_KVER:-$(for k in $(ls /lib/modules 2>/dev/null | sort -rV); do [ -e "/boot/vmlinuz-$k" ] \
	&& [ -d "/lib/modules/$k/kernel" ] && { echo "$k"; break; }; done)}
VM_KERNEL=${VM_KERNEL:-/boot/vmlinuz-$VM_KVER}
VM_MEM=${VM_MEM:-256}
VM_QEMU=${VM_QEMU:-qemu-system-x86_64}
VM_MARKER='IVSOCK-TEST-DONE rc='

vm_init()
{
	if [ -z "${VM_DIR:-}" ]; then
		VM_DIR=$(mktemp -d /var/tmp/ivsock-vmtest.XXXXXX)
	fi
	mkdir -p "$VM_DIR"
	trap vm_cleanup EXIT
}

vm_prereqs()
{
	local miss=""

	command -v "$VM_QEMU" >/dev/null 2>&1 || miss="$miss $VM_QEMU"
	[ -r "$VM_KERNEL" ] || miss="$miss $VM_KERNEL"
	[ -x /bin/busybox ] || miss="$miss /bin/busybox(busybox-static)"
	command -v cpio >/dev/null 2>&1 || miss="$miss cpio"
	if [ "${1:-}" = "--kmod" ]; then
		[ -d "/lib/modules/$VM_KVER/build" ] ||
			miss="$miss /lib/modules/$VM_KVER/build(linux-headers)"
	fi
	if [ -n "$miss" ]; then
		echo "SKIP: missing:$miss" >&2
		return 77
	fi
	return 0
}

vm_start()
{
	local name=$1 log=$2 initrd=$3
	local append="console=ttyS0 panic=-1 oops=panic"
	local uuid="" qmp="" sock="" vectors=2 netp="" netmode="" mac
	local -a args

	shift 3
	while [ $# -gt 0 ]; do
		case $1 in
		--ivshmem)
			sock=${2%%,*}
			case $2 in *,*) vectors=${2#*,} ;; esac
			shift ;;
		--net-listen) netmode=on; netp=$2; shift ;;
		--net-connect) netmode=off; netp=$2; shift ;;
		--append) append="$append $2"; shift ;;
		--qmp) qmp=$2; shift ;;
		--uuid) uuid=$2; shift ;;
		*) echo "vm_start: unknown option $1" >&2; return 2 ;;
		esac
		shift
	done
	[ -n "$uuid" ] || uuid=$(cat /proc/sys/kernel/random/uuid)

	args=(-accel tcg -m "$VM_MEM" -smp 1 -nodefaults -display none
	      -serial "file:$log" -no-reboot
	      -kernel "$VM_KERNEL" -initrd "$initrd" -append "$append"
	      -name "$name" -uuid "$uuid")
	if [ -n "$sock" ]; then
		args+=(-chardev "socket,path=$sock,id=ivs"
		       -device "ivshmem-doorbell,chardev=ivs,vectors=$vectors,id=ivs0")
	fi
	if [ -n "$netmode" ]; then
		# A MAC derived from NAME: two guests must not share QEMU's default.
		mac=$(printf '%s' "$name" | md5sum |
		      sed -E 's/^(..)(..)(..).*/52:54:00:\1:\2:\3/')
		args+=(-netdev "stream,id=n0,server=$netmode,addr.type=unix,addr.path=$netp"
		       -device "virtio-net-pci,netdev=n0,mac=$mac")
	fi
	[ -z "$qmp" ] || args+=(-qmp "unix:$qmp,server=on,wait=off")

	: >"$log"
	"$VM_QEMU" "${args[@]}" </dev/null >"$VM_DIR/$name.qemu.out" 2>&1 &
	echo $! >"$VM_DIR/$name.pid"
	echo "$name" >>"$VM_DIR/.guests"
}

vm_wait_marker()
{
	local log=$1 timeout=$2 pat=${3:-$VM_MARKER}
	local end=$((SECONDS + timeout))

	while [ $SECONDS -lt $end ]; do
		grep -q -- "$pat" "$log" 2>/dev/null && return 0
		sleep 0.2
	done
	return 124
}

vm_result()
{
	local rc

	rc=$(grep -a -o -- "${VM_MARKER}[0-9]*" "$1" 2>/dev/null | tail -n 1)
	rc=${rc#"$VM_MARKER"}
	[ -n "$rc" ] || { echo 125; return 125; }
	echo "$rc"
	return "$rc"
}

vm_log_clean()
{
	local pat='WARNING:|BUG:|BUG |Oops|Call Trace|general protection|kernel panic'

	if grep -a -E -- "$pat" "$1" >/dev/null 2>&1; then
		grep -a -n -E -- "$pat" "$1" | head -n 20 >&2
		return 1
	fi
	return 0
}

vm_qmp()
{
	python3 - "$1" "$2" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(30)
s.connect(sys.argv[1])
f = s.makefile("rw")
def reply():
    while True:
        m = json.loads(f.readline())
        if "event" not in m:
            return m
json.loads(f.readline())                  # greeting
f.write('{"execute":"qmp_capabilities"}\n'); f.flush(); reply()
f.write(sys.argv[2] + "\n"); f.flush()
r = reply()
print(json.dumps(r))
sys.exit(1 if "error" in r else 0)
PY
}

vm_device_del()
{
	local qmp=$1 id=$2 chardev=${3:-} i

	vm_qmp "$qmp" "{\"execute\":\"device_del\",\"arguments\":{\"id\":\"$id\"}}" ||
		return 1
	for i in $(seq 300); do
		vm_qmp "$qmp" '{"execute":"qom-list","arguments":{"path":"/machine/peripheral"}}' |
			grep -q "\"name\": \"$id\"" || break
		sleep 0.2
	done
	[ "$i" -lt 300 ] || { echo "vm_device_del: $id still there" >&2; return 1; }
	[ -z "$chardev" ] ||
		vm_qmp "$qmp" "{\"execute\":\"chardev-remove\",\"arguments\":{\"id\":\"$chardev\"}}"
}

vm_wait_unix()
{
	local end=$((SECONDS + $2))

	while [ $SECONDS -lt $end ]; do
		[ -S "$1" ] && return 0
		sleep 0.1
	done
	return 124
}

vm_bg()
{
	local name=$1

	shift
	"$@" >"$VM_DIR/$name.out" 2>&1 &
	echo $! >"$VM_DIR/$name.pid"
	echo "$name" >>"$VM_DIR/.guests"
}

vm_kill()
{
	local pidf="$VM_DIR/$1.pid" pid i

	[ -f "$pidf" ] || return 0
	pid=$(cat "$pidf")
	if kill "$pid" 2>/dev/null; then
		for i in 1 2 3 4 5 6 7 8 9 10; do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.2
		done
		kill -9 "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
	rm -f "$pidf"
}

vm_cleanup()
{
	local n

	[ -n "${VM_DIR:-}" ] && [ -f "$VM_DIR/.guests" ] || return 0
	for n in $(tac "$VM_DIR/.guests"); do
		vm_kill "$n"
	done
	rm -f "$VM_DIR/.guests"
}
