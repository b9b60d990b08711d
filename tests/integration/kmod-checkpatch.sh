#!/bin/bash
# SPDX-License-Identifier: MIT
# ivsock.ko builds warning-free (W=1, -Werror) against the guest kernel's
# headers, in its debug flavour too, and passes checkpatch --strict with no
# errors or warnings.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
kmod=$top/guestdrv/kmod
kver=$(ls -d /lib/modules/*/build 2>/dev/null | sed -e 's,^/lib/modules/,,' -e 's,/build$,,' | sort -V | tail -n 1)
[ -n "$kver" ] || { echo "no kernel headers installed (linux-headers-amd64)"; exit 77; }

work=$(mktemp -d /var/tmp/ivsock-kmod.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/guestdrv" && cp -r "$kmod" "$work/guestdrv/kmod"
mkdir -p "$work/protocol" && cp -r "$top/protocol/include" "$work/protocol/"

for dbg in 0 1; do
	make -s -C "$work/guestdrv/kmod" KVER="$kver" DEBUG=$dbg WERROR=1 W=1 clean all 2>&1 | tee "$work/build.log"
	if grep -qE 'warning:|error:' "$work/build.log"; then
		echo "FAIL: compiler diagnostics with DEBUG=$dbg"; exit 1
	fi
	[ -f "$work/guestdrv/kmod/ivsock.ko" ] || { echo "FAIL: no ivsock.ko (DEBUG=$dbg)"; exit 1; }
	modinfo "$work/guestdrv/kmod/ivsock.ko" | grep -q '^alias:.*v00001AF4d00001110' ||
		{ echo "FAIL: module does not alias 1af4:1110"; exit 1; }
done
echo "built ivsock.ko for $kver (plain and DEBUG=1)"

if ! ls /usr/src/linux-source-*.tar.* >/dev/null 2>&1 && [ ! -f "/lib/modules/$kver/build/scripts/checkpatch.pl" ]; then
	echo "checkpatch.pl unavailable (install linux-source)"; exit 77
fi
make -s -C "$work/guestdrv/kmod" checkpatch KVER="$kver" 2>&1 | tee "$work/cp.log"
if grep -qE '^(ERROR|WARNING):' "$work/cp.log"; then
	echo "FAIL: checkpatch reported problems"; exit 1
fi
echo "checkpatch: clean"
