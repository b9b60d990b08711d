#!/bin/bash
# SPDX-License-Identifier: MIT
# Runs every libFuzzer harness in $O/tests/fuzz/ for FUZZ_SECONDS each,
# starting from its committed seed corpus (tests/fuzz/corpus/NAME/, read
# only: new inputs go to a scratch directory). Any crash, leak, sanitizer
# report or timeout fails; the input that did it is kept in
# $O/fuzz-artifacts/. Usage: run-fuzz.sh [NAME...] (default: all).
#
# Files named crash-* in a corpus directory are reproducers of known,
# still-open bugs in code outside tests/fuzz (see docs/testing.md): they are
# not used as seeds; each is run once with every check fatal
# (IVSOCK_FUZZ_XFAIL empty; FUZZ_REPRO_RUNS times, default 1000, as races
# need several tries) and reported as KNOWN (still fails) or FIXED
# (passes now: delete it, and its id from the harness's xfail list). They
# fail the run only with FUZZ_KNOWN_FATAL=1.
set -u
cd "$(dirname "$0")/../.."
O="${O:-build-fuzz}"
SECS="${FUZZ_SECONDS:-20}"
ART="$O/fuzz-artifacts"
mkdir -p "$ART"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"

names=("$@")
if [ ${#names[@]} -eq 0 ]; then
	for h in "$O"/tests/fuzz/fuzz_*; do
		[ -x "$h" ] && [ "${h%.[od]}" = "$h" ] && names+=("$(basename "$h" | sed 's/^fuzz_//')")
	done
fi
if [ ${#names[@]} -eq 0 ]; then
	echo "run-fuzz: no harness in $O/tests/fuzz/ (make check-fuzz builds them)" >&2
	exit 2
fi

pass=0 fail=0
for n in "${names[@]}"; do
	h="$O/tests/fuzz/fuzz_$n"
	seeds="tests/fuzz/corpus/$n"
	work=$(mktemp -d "${TMPDIR:-/tmp}/ivsock-fuzz-$n.XXXXXX")
	log="$ART/$n.log"
	# Per-harness libFuzzer flags (e.g. -close_fd_mask for chatty code).
	extra=()
	[ -f "tests/fuzz/$n.options" ] && read -ra extra <"tests/fuzz/$n.options"
	dirs=("$work")
	if [ -d "$seeds" ]; then
		# seeds without the known-crash reproducers
		mkdir -p "$work.seeds"
		find "$seeds" -maxdepth 1 -type f ! -name 'crash-*' -exec cp {} "$work.seeds/" \;
		dirs+=("$work.seeds")
	fi
	printf '=== fuzz  %-16s %ss\n' "$n" "$SECS"
	# -timeout: one input taking longer is a hang; rss limit well under the
	# machine's memory; the outer timeout is a backstop.
	timeout --kill-after=10 $((SECS + 60)) "$h" -max_total_time="$SECS" -timeout=10 \
		-rss_limit_mb=2048 -max_len=4096 -print_final_stats=1 \
		-artifact_prefix="$ART/$n-" "${extra[@]}" "${dirs[@]}" >"$log" 2>&1
	rc=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	if [ $rc -eq 0 ]; then
		pass=$((pass + 1))
		printf -- '--- PASS  fuzz_%s (%s runs)\n' "$n" "${runs:-?}"
	else
		fail=$((fail + 1))
		printf -- '--- FAIL  fuzz_%s (exit %s), log %s\n' "$n" $rc "$log"
		grep -E 'ERROR|SUMMARY|fuzz invariant|leaked|Test unit written' "$log" | head -n 12
	fi
	for r in "$seeds"/crash-*; do
		[ -f "$r" ] || continue
		# (the braces keep bash's "Aborted" job notice out of the output)
		if { IVSOCK_FUZZ_XFAIL= IVSOCK_FUZZ_WATCHDOG_MS=3000 timeout --kill-after=5 60 \
			"$h" -timeout=10 -runs="${FUZZ_REPRO_RUNS:-1000}" "${extra[@]}" "$r" \
			>"$log.repro" 2>&1; } 2>/dev/null; then
			printf -- '--- FIXED fuzz_%s %s (reproducer passes: remove it)\n' "$n" "$(basename "$r")"
		else
			printf -- '--- KNOWN fuzz_%s %s: %s\n' "$n" "$(basename "$r")" \
				"$(grep -m1 -E 'fuzz invariant|SUMMARY' "$log.repro")"
			[ "${FUZZ_KNOWN_FATAL:-0}" = 1 ] && fail=$((fail + 1))
		fi
	done
	rm -rf "$work" "$work.seeds"
done
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
