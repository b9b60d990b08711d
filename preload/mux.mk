# SPDX-License-Identifier: MIT
# Unit tests of the readiness multiplexers of libivsock.so (preload/mux_*.c)
# against a fake socket core: preload/tests/mux_NAME.c becomes
# $(O)/tests/unit/test_mux_NAME (included by preload/build.mk).

MUX_OBJS      := $(patsubst %.c,$(O)/%.o,$(wildcard preload/mux_*.c))
MUX_TEST_SRCS := $(wildcard preload/tests/mux_*.c)
MUX_TESTS     := $(MUX_TEST_SRCS:preload/tests/mux_%.c=$(O)/tests/unit/test_mux_%)

$(MUX_TEST_SRCS:%.c=$(O)/%.o): ALL_CFLAGS += -Ipreload

$(MUX_TESTS): $(O)/tests/unit/test_mux_%: $(O)/preload/tests/mux_%.o $(MUX_OBJS) $(PROTO_LIB)
	$(call msg,LD,$@)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ -lcmocka -lpthread -ldl

ALL   += $(MUX_TESTS)
TESTS += $(MUX_TESTS)

# Lab conformance programs of the multiplexers (tests/conformance/mux_*.c,
# with the harness of the lab's cf_* programs; run by
# tests/conformance/mux_lab.sh).
MUX_CONF_SRCS := $(wildcard tests/conformance/mux_*.c)
MUX_CONF_BINS := $(MUX_CONF_SRCS:tests/conformance/%.c=$(O)/tests/conformance/%)

$(MUX_CONF_BINS): $(O)/tests/conformance/%: $(O)/tests/conformance/%.o $(O)/tests/conformance/conf.o
	$(call msg,LD,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ -lpthread

ALL += $(MUX_CONF_BINS)
