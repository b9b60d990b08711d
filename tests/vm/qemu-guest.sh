#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Boot one test guest by hand, in the foreground, with lib.sh's settings:
#
#   qemu-guest.sh NAME LOG INITRD [vm_start options]
#       e.g. qemu-guest.sh g1 /tmp/g1.log initrd.gz \
#                --ivshmem /run/ivsock/lab.sock,4 --qmp /tmp/g1.qmp
#
# Waits for the "IVSOCK-TEST-DONE rc=N" marker (timeout $VM_TIMEOUT,
# default 300 s), prints the log and exits with N (124 on timeout; 77 if
# QEMU or the guest kernel is missing). Scripts should source lib.sh.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

[ $# -ge 3 ] || { sed -n '3,13p' "$0" >&2; exit 2; }
vm_prereqs --no-kmod || exit 77
vm_init
log=$2
vm_start "$@"
rc=0
vm_wait_marker "$log" "${VM_TIMEOUT:-300}" || rc=$?
cat "$log"
[ $rc -eq 0 ] || exit $rc
vm_result "$log" >/dev/null
