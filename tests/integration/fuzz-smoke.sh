#!/bin/bash
# SPDX-License-Identifier: MIT
# Every libFuzzer harness of tests/fuzz/ for a few seconds (FUZZ_SMOKE_SECONDS,
# default 5) from its seed corpus: builds build-fuzz/ with clang (as `make
# check-fuzz` does) and fails on any crash, sanitizer report, fd leak or
# hang; replays the known-failure reproducers (corpus/*/crash-*) as KNOWN or
# FIXED. A cheap version of `make check-fuzz` for every CI run.
set -eu
cd "$(dirname "$0")/../.."
command -v clang >/dev/null || { echo "SKIP: clang missing"; exit 77; }
rt=$(clang -print-file-name=libclang_rt.fuzzer-x86_64.a 2>/dev/null || true)
[ -f "$rt" ] || rt=$(find /usr/lib/llvm-*/lib/clang -name 'libclang_rt.fuzzer-x86_64.a' 2>/dev/null | head -n 1)
[ -n "$rt" ] && [ -f "$rt" ] || { echo "SKIP: libFuzzer runtime missing (libclang-rt-14-dev)"; exit 77; }

make --no-print-directory -j"$(nproc)" O=build-fuzz CC=clang \
	SANITIZE=fuzzer-no-link,address,undefined CFLAGS="-O1 -g" fuzz-targets
# run-fuzz.sh exits 0 or 1; a crashing harness's own exit code (libFuzzer
# uses 77) never leaks out as "skip".
if O=build-fuzz FUZZ_SECONDS="${FUZZ_SMOKE_SECONDS:-5}" tests/fuzz/run-fuzz.sh; then
	exit 0
fi
exit 1
