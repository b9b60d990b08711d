# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# Helpers for lab-based tests: bring the lab up (or reuse a running one, which
# is then left running), tear down on exit only what we brought up, and find
# the shim. Source from bash:  . "$IVSOCK_TOP/tests/lab/lib.sh"
#
#   lab_begin [--hosts N] [--vms M]  up or reuse; EXIT trap downs it if ours
#   lab_shim_ready     0 if ivsock-run, libivsock.so and the daemons are built
#                      and the lab runs daemons (else prints why, returns 1)
#   LAB                path of the lab command

IVSOCK_TOP=${IVSOCK_TOP:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
O=${O:-build}
case $O in /*) LAB_OB=$O ;; *) LAB_OB=$IVSOCK_TOP/$O ;; esac
export O
LAB=$IVSOCK_TOP/tests/lab/lab
IVSOCK_RUN=${IVSOCK_RUN:-$LAB_OB/preload/ivsock-run}
IVSOCK_SHIM_SO=${IVSOCK_SHIM_SO:-$LAB_OB/preload/libivsock.so}
IVSOCKCTL=${IVSOCKCTL:-$LAB_OB/hostd/ivsockctl}
export IVSOCK_RUN IVSOCKCTL
LAB_OURS=0
LAB_EXIT_HOOKS=()

lab_on_exit() {
	local h
	for h in "${LAB_EXIT_HOOKS[@]}"; do eval "$h" || true; done
	if [ "$LAB_OURS" -eq 1 ]; then "$LAB" down >/dev/null 2>&1 || true; fi
}

lab_begin() {
	[ "$(id -u)" -eq 0 ] || { echo "SKIP: the lab needs root (network namespaces)"; exit 77; }
	if "$LAB" status >/dev/null 2>&1; then
		"$LAB" up --reuse "$@" || exit 1
	else
		"$LAB" down >/dev/null 2>&1 || true
		"$LAB" up "$@" || exit 1
		LAB_OURS=1
	fi
	trap lab_on_exit EXIT
	trap 'exit 130' INT TERM
}

lab_daemons() { grep -q '^LAB_DAEMONS=1' "${IVSOCK_LAB_DIR:-/run/ivsock-lab}/state" 2>/dev/null; }

lab_shim_ready() {
	local f
	for f in "$IVSOCK_RUN" "$IVSOCK_SHIM_SO" "$IVSOCKCTL"; do
		[ -e "$f" ] || { echo "shim not built yet: $f missing"; return 1; }
	done
	lab_daemons || { echo "lab runs without daemons (ivsockd/ivsock-agent not built)"; return 1; }
	return 0
}
