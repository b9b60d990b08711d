# SPDX-License-Identifier: MIT
# libFuzzer harnesses for every parser of untrusted input (tests/fuzz/fuzz_*.c)
# and the seed-corpus generator. Only built on request, with clang:
# `make check-fuzz` runs `make O=build-fuzz CC=clang
# SANITIZE=fuzzer-no-link,address,undefined fuzz-targets`, which compiles the
# libraries for coverage and links each harness with -fsanitize=fuzzer.

FUZZ_SRCS    := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_TARGETS := $(FUZZ_SRCS:tests/fuzz/%.c=$(O)/tests/fuzz/%)
FUZZ_MKCORPUS := $(O)/tests/fuzz/mkcorpus

# What each harness links besides itself and libivsock-proto.a.
FUZZ_HOSTD_DEPS := $(HOSTD_LIB_OBJS)
FUZZ_AGENT_DEPS := $(AGENT_LIB)

$(O)/tests/fuzz/fuzz_%: $(O)/tests/fuzz/fuzz_%.o $(PROTO_LIB)
	$(call msg,LD,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) -fsanitize=fuzzer -o $@ $(filter %.o,$^) \
		$(filter-out $(PROTO_LIB),$(filter %.a,$^)) $(PROTO_LIB) $(FUZZ_LDLIBS_$*)

# Harnesses over hostd's code link the daemon's objects (minus main.o).
FUZZ_LDLIBS_hostd_mailbox := $(HOSTD_LIBS)
FUZZ_LDLIBS_hostd_mailbox_race := $(HOSTD_LIBS)
FUZZ_LDLIBS_control       := $(HOSTD_LIBS)
FUZZ_LDLIBS_config        := $(HOSTD_LIBS)
FUZZ_LDLIBS_identify      := $(HOSTD_LIBS)
FUZZ_LDLIBS_ctl_reply     := -ljansson -lpthread
FUZZ_LDLIBS_agent_request := $(AGENT_LDLIBS)
FUZZ_LDLIBS_agent_mbresp  := $(AGENT_LDLIBS)
# The broker (guestdrv/agent/broker.c) over a real region and real sockets.
FUZZ_LDLIBS_broker        := $(AGENT_LDLIBS)
# The shim's data path: links the shim's own objects (preload/*.o, which
# interpose libc calls in the harness too; plain fds pass straight through).
FUZZ_LDLIBS_shim_data      = $(SHIM_WRAP) -ldl -lpthread
$(O)/tests/fuzz/fuzz_shim_data: $(SHIM_OBJS)
$(O)/tests/fuzz/fuzz_shim_data.o: ALL_CFLAGS += -Ipreload
$(O)/tests/fuzz/fuzz_hostd_mailbox $(O)/tests/fuzz/fuzz_hostd_mailbox_race $(O)/tests/fuzz/fuzz_control \
$(O)/tests/fuzz/fuzz_config $(O)/tests/fuzz/fuzz_identify: $(FUZZ_HOSTD_DEPS)
$(O)/tests/fuzz/fuzz_agent_request $(O)/tests/fuzz/fuzz_agent_mbresp \
$(O)/tests/fuzz/fuzz_broker: $(FUZZ_AGENT_DEPS)

# Writes the committed seed corpora (tests/fuzz/corpus/); built with any CC.
$(FUZZ_MKCORPUS): $(O)/tests/fuzz/mkcorpus.o $(PROTO_LIB)
	$(call msg,LD,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^

.SECONDARY: $(FUZZ_SRCS:%.c=$(O)/%.o) $(O)/tests/fuzz/mkcorpus.o

.PHONY: fuzz-targets fuzz-corpus
fuzz-targets: $(FUZZ_TARGETS)

# Regenerate the seed corpora from the current structure layouts.
fuzz-corpus: $(FUZZ_MKCORPUS)
	$(Q)$(FUZZ_MKCORPUS) tests/fuzz/corpus

# clang (not gcc) warns about the signed/unsigned comparison inside the
# system macro NLMSG_OK as used by guestdrv/agent/addrs.c; only the fuzz build
# uses clang, so only it relaxes that one warning for that one file.
ifneq ($(findstring fuzzer,$(SANITIZE)),)
$(O)/guestdrv/agent/addrs.o: ALL_CFLAGS += -Wno-sign-compare
endif
