# SPDX-License-Identifier: MIT
# Benchmarks: ring_bench (one ivsock ring between two processes against a
# bare two-thread SPSC ring). Not installed; run from the build tree.

BENCH_PROGS := $(O)/bench/ring_bench

$(O)/bench/ring_bench: $(O)/bench/ring_bench.o $(PROTO_LIB)
	$(call msg,LD,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ -lpthread

.SECONDARY: $(O)/bench/ring_bench.o

ALL += $(BENCH_PROGS)
