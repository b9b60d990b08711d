# SPDX-License-Identifier: MIT
# Benchmarks: ring_bench (one ivsock ring between two processes against a
# bare two-thread SPSC ring), crr_phases (where a short connection's time
# goes: bench/crr-phases). Not installed; run from the build tree.

BENCH_PROGS := $(O)/bench/ring_bench $(O)/bench/crr_phases

$(O)/bench/ring_bench: $(O)/bench/ring_bench.o $(PROTO_LIB)
	$(call msg,LD,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ -lpthread

$(O)/bench/crr_phases: $(O)/bench/crr_phases.o
	$(call msg,LD,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^

.SECONDARY: $(O)/bench/ring_bench.o $(O)/bench/crr_phases.o

ALL += $(BENCH_PROGS)
