#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Build a busybox initramfs for real-VM tests.
#
#   mkinitramfs.sh OUT.cpio.gz [SRC:DST ...]
#
# Each SRC:DST copies a host file into the image (DST absolute). A dynamic
# executable drags in its shared libraries (found with ldd); static test
# binaries are preferred. Put /test.sh in to have it run; a module copied to
# /lib/modules/NAME.ko is loaded at boot.
#
# Environment:
#   VM_KVER     guest kernel whose modules are used (default: newest kernel in /boot with modules)
#   VM_MODULES  kernel modules to include with their dependencies, loaded
#               at boot in dependency order (default: "virtio_pci virtio_net", so
#               eth0 exists when QEMU has a virtio-net-pci device); set
#               empty for none. .ko.xz/.ko.zst/.ko.gz are decompressed.
#
# The image's /init (the guest half of lib.sh's contract):
#   1. mounts proc, sysfs, devtmpfs, tmpfs /tmp, debugfs;
#   2. loads /lib/modules/load.order, then any other /lib/modules/*.ko;
#   3. exports every kernel argument ivsock.KEY=VAL as IVSOCK_KEY=VAL
#      (upper-cased KEY), brings up lo, and eth0 with IVSOCK_IP
#      (ivsock.ip=10.77.0.2/24) if both exist;
#   4. runs /test.sh if present (else rc=0), prints
#      "IVSOCK-TEST-DONE rc=N" on the console and powers off (poweroff -f),
#      or, with ivsock.hold=1, idles until the host kills it.
set -eu

usage() { echo "usage: $0 OUT.cpio.gz [SRC:DST ...]" >&2; exit 2; }
[ $# -ge 1 ] || usage
out=$1
shift

# Newest installed Debian kernel with modules (the guest kernel; not uname -r).
VM_KVER=${VM_KVER:-$(for k in $(ls /lib/modules 2>/dev/null | sort -rV); do [ -e "/boot/vmlinuz-$k" ] \
	&& [ -d "/lib/modules/$k/kernel" ] && { echo "$k"; break; }; done)}
VM_MODULES=${VM_MODULES-virtio_pci virtio_net}
moddir=/lib/modules/$VM_KVER

root=$(mktemp -d /tmp/ivsock-initramfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,etc,root,lib/modules,usr/bin,usr/sbin}
cp /bin/busybox "$root/bin/busybox"
ln -s busybox "$root/bin/sh"

# Copy FILE to DST inside the image, with its libraries if it is dynamic.
add_file()
{
	local src=$1 dst=$2 lib

	mkdir -p "$root$(dirname "$dst")"
	cp -L "$src" "$root$dst"
	if [ -x "$src" ] && file -L "$src" | grep -q 'dynamically linked'; then
		for lib in $(ldd "$src" | grep -o '/[^ ]*'); do
			[ -e "$root$lib" ] && continue
			mkdir -p "$root$(dirname "$lib")"
			cp -L "$lib" "$root$lib"
		done
	fi
}

# Copy module NAME (and, first, its dependencies) into /lib/modules and
# append it to load.order.
add_module()
{
	local name=$1 rel dep base

	rel=$(grep -E "(^|/)${name//-/_}\.ko(\.[a-z]+)?:" "$moddir/modules.dep" |
	      head -n 1 | cut -d: -f1) || true
	if [ -z "$rel" ]; then
		rel=$(grep -E "(^|/)${name//_/-}\.ko(\.[a-z]+)?:" \
		      "$moddir/modules.dep" | head -n 1 | cut -d: -f1) || true
	fi
	if [ -z "$rel" ]; then
		# Built into the kernel: nothing to load.
		grep -qE "/${name}\.ko" "$moddir/modules.builtin" 2>/dev/null ||
			echo "mkinitramfs: module $name not found for $VM_KVER" >&2
		return 0
	fi
	# shellcheck disable=SC2013 # modules.dep: one line, words are paths
	for dep in $(grep -E "^$rel:" "$moddir/modules.dep" | cut -d: -f2); do
		base=$(basename "$dep")
		add_module "${base%%.ko*}"
	done
	base=$(basename "$rel")
	base=${base%%.ko*}
	grep -qx "$base.ko" "$root/lib/modules/load.order" 2>/dev/null && return 0
	case $rel in
	*.ko.xz) xz -dc "$moddir/$rel" >"$root/lib/modules/$base.ko" ;;
	*.ko.zst) zstd -qdc "$moddir/$rel" >"$root/lib/modules/$base.ko" ;;
	*.ko.gz) gzip -dc "$moddir/$rel" >"$root/lib/modules/$base.ko" ;;
	*) cp "$moddir/$rel" "$root/lib/modules/$base.ko" ;;
	esac
	echo "$base.ko" >>"$root/lib/modules/load.order"
}

: >"$root/lib/modules/load.order"
for m in $VM_MODULES; do
	add_module "$m"
done

for pair in "$@"; do
	case $pair in
	*:/*) add_file "${pair%%:*}" "${pair#*:}" ;;
	*) echo "mkinitramfs: bad SRC:DST '$pair'" >&2; exit 2 ;;
	esac
done

cat >"$root/init" <<'INIT'
#!/bin/sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null

for m in $(cat /lib/modules/load.order); do
	insmod /lib/modules/$m || echo "init: insmod $m failed"
done
for m in /lib/modules/*.ko; do
	[ -e "$m" ] || continue
	grep -qx "${m##*/}" /lib/modules/load.order && continue
	insmod "$m" || echo "init: insmod $m failed"
done

for arg in $(cat /proc/cmdline); do
	case $arg in
	ivsock.*=*)
		k=${arg%%=*}; k=${k#ivsock.}
		k=$(echo "$k" | tr 'a-z.-' 'A-Z__')
		export "IVSOCK_$k=${arg#*=}" ;;
	esac
done

ip link set lo up
if [ -n "$IVSOCK_IP" ] && [ -e /sys/class/net/eth0 ]; then
	ip addr add "$IVSOCK_IP" dev eth0
	ip link set eth0 up
fi

if [ -f /test.sh ]; then
	sh /test.sh
	rc=$?
else
	rc=0
fi
echo "IVSOCK-TEST-DONE rc=$rc"
sync
if [ "$IVSOCK_HOLD" = 1 ]; then
	# The host stops this guest when it suits (e.g. after the peers
	# are done with the ivshmem server).
	echo "init: holding (ivsock.hold=1)"
	while :; do sleep 3600; done
fi
poweroff -f
INIT
chmod 755 "$root/init"
[ ! -f "$root/test.sh" ] || chmod 755 "$root/test.sh"

(cd "$root" && find . -print0 | cpio --null -o -H newc --quiet) |
	gzip -1 >"$out"
