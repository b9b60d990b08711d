#!/bin/bash
# SPDX-License-Identifier: MIT
# Test runner: runs each test with a timeout; exit 0 = pass, 77 = skip,
# anything else = fail. Prints one closing line "N passed, N failed, N skipped".
#
# Suites (default: unit integration vm):
#   unit         every executable in $O/tests/unit/ (cmocka programs)
#   tsan         every executable in $O/tests/tsan/ (ThreadSanitizer build)
#   integration  tests/integration/*.sh, in name order (lab tests: namespaces)
#   vm           tests/vm/test-*.sh: real QEMU guests (long; IVSOCK_SKIP_VM=1 skips)
# Environment: O (build dir, default build), IVSOCK_TEST_FILTER (substring),
# IVSOCK_TEST_TIMEOUT (seconds, overrides the per-suite default).
set -u
cd "$(dirname "$0")/.."
export O="${O:-build}"
export IVSOCK_TOP="$PWD"
LOGDIR="$O/test-logs"
mkdir -p "$LOGDIR"

suites=("$@")
[ ${#suites[@]} -eq 0 ] && suites=(unit integration vm)

pass=0 fail=0 skip=0
failed=()

run_one() { # suite name timeout cmd...
	local suite=$1 name=$2 tmo=$3; shift 3
	local log="$LOGDIR/$suite-$(basename "$name").log" rc start end
	[ -n "${IVSOCK_TEST_TIMEOUT:-}" ] && tmo=$IVSOCK_TEST_TIMEOUT
	if [ -n "${IVSOCK_TEST_FILTER:-}" ] && [[ "$name" != *"$IVSOCK_TEST_FILTER"* ]]; then
		return
	fi
	start=$(date +%s)
	printf '=== %-5s %s\n' "$suite" "$name"
	timeout --kill-after=10 "$tmo" "$@" >"$log" 2>&1
	rc=$?
	end=$(date +%s)
	# cmocka's own summary lines, and the tail of anything that failed.
	grep -aE '^\[ *(PASSED|FAILED|SKIPPED|==========) *\]' "$log" | tail -n 4 || true
	case $rc in
	0)  pass=$((pass + 1)); printf -- '--- PASS  %s (%ss)\n' "$name" $((end - start)) ;;
	77) skip=$((skip + 1)); printf -- '--- SKIP  %s: %s\n' "$name" "$(tail -n 1 "$log")" ;;
	124|137) fail=$((fail + 1)); failed+=("$name"); printf -- '--- FAIL  %s (timeout %ss)\n' "$name" "$tmo"; tail -n 30 "$log" ;;
	*)  fail=$((fail + 1)); failed+=("$name"); printf -- '--- FAIL  %s (exit %s)\n' "$name" $rc
	    # The failing checks first: a long log's tail may not hold them.
	    grep -a -E '(^|[] ])(FAIL|not ok)[ :]' "$log" | head -n 20 | sed 's/^/    /'
	    tail -n 40 "$log" ;;
	esac
}

for s in "${suites[@]}"; do
	case $s in
	unit|tsan)
		for t in "$O"/tests/$s/*; do
			[ -f "$t" ] && [ -x "$t" ] || continue
			run_one "$s" "$t" 300 "$t"
		done ;;
	integration)
		for t in tests/integration/*.sh; do
			[ -f "$t" ] || continue
			run_one "$s" "$t" 600 bash "$t"
		done ;;
	vm)
		for t in tests/vm/test-*.sh; do
			[ -f "$t" ] || continue
			if [ -n "${IVSOCK_SKIP_VM:-}" ]; then
				skip=$((skip + 1)); printf -- '--- SKIP  %s: IVSOCK_SKIP_VM set\n' "$t"; continue
			fi
			run_one "$s" "$t" 900 bash "$t"
		done ;;
	*) echo "run-tests: unknown suite '$s'" >&2; exit 2 ;;
	esac
done

echo
[ ${#failed[@]} -gt 0 ] && printf 'failed: %s\n' "${failed[@]}"
echo "logs: $LOGDIR/"
echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ] && [ $((pass + skip)) -gt 0 ]
