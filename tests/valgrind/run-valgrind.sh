#!/bin/bash
# SPDX-License-Identifier: MIT
# `make check-valgrind`: every unit test program of $O/tests/unit/ under
# valgrind memcheck (any error or definite leak fails), then ivsockd through
# a short lifecycle (tests/integration/valgrind-hostd.sh).
#
# Skipped by default (VALGRIND_SKIP, space-separated names): test_ring_xproc,
# two processes streaming megabytes through one ring with checksums: ~40 s
# under valgrind (x50), for code ThreadSanitizer (make check-tsan) and ASan
# already run with the same test. Every other program takes 0.5-4 s.
set -u
cd "$(dirname "$0")/../.."
O="${O:-build}"
SKIP="${VALGRIND_SKIP-test_ring_xproc}"
LOGDIR="$O/test-logs"
mkdir -p "$LOGDIR"
command -v valgrind >/dev/null || { echo "run-valgrind: valgrind missing (make deps)" >&2; exit 2; }

pass=0 fail=0 skip=0
for t in "$O"/tests/unit/*; do
	[ -f "$t" ] && [ -x "$t" ] || continue
	n=$(basename "$t")
	if [[ " $SKIP " == *" $n "* ]]; then
		skip=$((skip + 1)); printf -- '--- SKIP  %s (VALGRIND_SKIP)\n' "$n"; continue
	fi
	log="$LOGDIR/valgrind-$n.log"
	# --error-exitcode: memcheck errors and definite leaks turn into exit 99;
	# a failing test keeps its own code. Forked children are checked too.
	timeout --kill-after=10 300 valgrind -q --error-exitcode=99 --leak-check=full \
		--errors-for-leak-kinds=definite --show-leak-kinds=definite \
		--child-silent-after-fork=no "$t" >"$log" 2>&1
	rc=$?
	if [ $rc -eq 0 ]; then
		pass=$((pass + 1)); printf -- '--- PASS  %s\n' "$n"
	elif [ $rc -eq 77 ]; then
		skip=$((skip + 1)); printf -- '--- SKIP  %s: %s\n' "$n" "$(tail -n 1 "$log")"
	else
		fail=$((fail + 1)); printf -- '--- FAIL  %s (exit %s), log %s\n' "$n" $rc "$log"
		grep -E '^==[0-9]+== ' "$log" | head -n 30
	fi
done

log="$LOGDIR/valgrind-hostd.log"
O="$O" bash tests/integration/valgrind-hostd.sh >"$log" 2>&1
rc=$?
case $rc in
0)  pass=$((pass + 1)); echo "--- PASS  ivsockd lifecycle" ;;
77) skip=$((skip + 1)); echo "--- SKIP  ivsockd lifecycle: $(tail -n 1 "$log")" ;;
*)  fail=$((fail + 1)); echo "--- FAIL  ivsockd lifecycle (exit $rc), log $log"; tail -n 40 "$log" ;;
esac
echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
