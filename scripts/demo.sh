#!/bin/bash
# SPDX-License-Identifier: MIT
# The one-command demo (`sudo make demo`): install missing Debian packages,
# build, bring up a lab of simulated VMs, compare netperf over kernel TCP and
# over ivsock (bench/netperf-compare --quick), print the table, and tear the
# lab down again, also on failure or Ctrl-C.
#
#   ivs-h1-vm1: netserver  ── br0 (ns ivs-h1) ──  ivs-h1-vm2: netperf
#   (plain, and under ivsock-run)      ivsockd       (plain, and under ivsock-run)
#
# Environment: DEMO_ARGS (passed to netperf-compare, default --quick),
# O (build dir), MAKE (default make).
set -eu
cd "$(dirname "$0")/.."
MAKE=${MAKE:-make}

[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (sudo make demo): the lab uses network namespaces" >&2; exit 1; }

step() { printf '\n==> %s\n' "$*"; }

step "dependencies"
scripts/deps.sh

step "build"
$MAKE -j"$(nproc)" --no-print-directory all

LAB=tests/lab/lab
ours=0
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ $ours -eq 1 ]; then
		step "tearing the lab down"
		$LAB down || true
	fi
	[ $rc -eq 0 ] || echo "demo: failed (exit $rc); lab logs in ${IVSOCK_LAB_DIR:-/run/ivsock-lab}/log" >&2
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "lab: 1 host, 2 VMs (network namespaces), ivsockd + one agent per VM"
if $LAB status >/dev/null 2>&1; then
	echo "demo: a lab is already running: using it (and leaving it up)"
else
	$LAB down >/dev/null 2>&1 || true
	ours=1
	$LAB up --hosts 1 --vms 2
fi
$LAB wait-ready 30
$LAB status

step "netperf: kernel TCP vs ivsock, same path, interleaved"
# shellcheck disable=SC2086
if ! bench/netperf-compare ${DEMO_ARGS:---quick}; then
	echo "demo: some workloads had no successful run on one side (see the table and" \
	     "bench/results/netperf-compare-latest.json: *_errors)" >&2
	exit 1
fi
