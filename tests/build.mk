# SPDX-License-Identifier: MIT
# Tests of libivsock-proto.a: one cmocka program per module in tests/unit/
# (run by `tests/run-tests.sh unit`), and the ring concurrency programs built
# into $(O)/tests/tsan/ for `make check-tsan`.

TEST_LDLIBS := -lcmocka -lpthread

UNIT_TEST_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_TESTS     := $(UNIT_TEST_SRCS:tests/unit/%.c=$(O)/tests/unit/%)

$(O)/tests/unit/test_%: $(O)/tests/unit/test_%.o $(PROTO_LIB)
	$(call msg,LD,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(TEST_LDLIBS)

# Ring concurrency under ThreadSanitizer: the two-thread ring and the
# two-process stream (built from the unit test's source). TSAN_TESTS names a
# phony goal, not paths: check-tsan expands it in the outer make (O=build)
# and hands it to the inner one (O=build-tsan).
TSAN_BINS  := $(O)/tests/tsan/test_ring_threads $(O)/tests/tsan/test_ring_xproc \
              $(O)/tests/tsan/test_chan_threads
TSAN_TESTS := tsan-tests

.PHONY: tsan-tests
tsan-tests: $(TSAN_BINS)

$(O)/tests/tsan/test_ring_threads: $(O)/tests/tsan/test_ring_threads.o $(PROTO_LIB)
	$(call msg,LD,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(TEST_LDLIBS)

$(O)/tests/tsan/test_chan_threads: $(O)/tests/tsan/test_chan_threads.o $(PROTO_LIB)
	$(call msg,LD,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(TEST_LDLIBS)

$(O)/tests/tsan/test_ring_xproc: $(O)/tests/unit/test_ring_xproc.o $(PROTO_LIB)
	$(call msg,LD,$@)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(TEST_LDLIBS)

# Keep the objects: they are intermediate for make's pattern rules.
.SECONDARY: $(UNIT_TESTS:%=%.o) $(O)/tests/tsan/test_ring_threads.o \
            $(O)/tests/tsan/test_chan_threads.o

ALL   += $(UNIT_TESTS) $(TSAN_BINS)
TESTS += $(UNIT_TESTS)
