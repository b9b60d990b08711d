# SPDX-License-Identifier: MIT
# Conformance programs (tests/conformance/cf_*.c): one client/server program
# per API area of the shim's contract, each linked with the conf.c harness,
# built to $(O)/tests/conformance/cf_*. Run by tests/integration/conformance.sh.

CONF_SRCS := $(wildcard tests/conformance/cf_*.c)
CONF_BINS := $(CONF_SRCS:tests/conformance/%.c=$(O)/tests/conformance/%)
CONF_OBJS := $(CONF_SRCS:%.c=$(O)/%.o) $(O)/tests/conformance/conf.o

# Keep the objects (pattern-chain intermediates) for incremental builds.
.SECONDARY: $(CONF_OBJS)

$(O)/tests/conformance/cf_%: $(O)/tests/conformance/cf_%.o $(O)/tests/conformance/conf.o
	$(call msg,LD,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ -lpthread

ALL += $(CONF_BINS)
