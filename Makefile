# SPDX-License-Identifier: MIT
# ivsock: one non-recursive make for the whole tree. Each component adds its
# targets in its own build.mk; objects go to $(O) (default build/), so
# `make O=/tmp/x` builds out of tree and sanitizer builds live side by side.

O        ?= build
PREFIX   ?= /usr/local
DESTDIR  ?=
CC       ?= cc
AR       ?= ar
CFLAGS   ?= -O2 -g
SANITIZE ?=
V        ?= 0

BASE_CFLAGS := -std=gnu11 -Wall -Wextra -Werror -fPIC -D_GNU_SOURCE \
	       -Iprotocol/include -MMD -MP
ifneq ($(SANITIZE),)
  BASE_CFLAGS += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer
  SAN_LDFLAGS := -fsanitize=$(SANITIZE)
endif
ALL_CFLAGS  = $(BASE_CFLAGS) $(CFLAGS)
ALL_LDFLAGS = $(SAN_LDFLAGS) $(LDFLAGS)

ifeq ($(V),1)
  Q :=
  msg = @true
else
  Q := @
  msg = @printf '  %-7s %s\n' $(1) $(2)
endif

# Programs and libraries each build.mk appends to.
PROGRAMS :=
LIBS     :=
TESTS    :=
ALL      :=

.PHONY: all test check check-asan check-tsan install deps clean
all: all-targets

include protocol/build.mk
-include hostd/build.mk
-include guestdrv/build.mk
-include preload/build.mk
-include bench/build.mk
-include tests/build.mk
-include tests/conformance/build.mk
-include tests/fuzz/build.mk

all-targets: $(ALL)

$(O)/%.o: %.c
	$(call msg,CC,$@)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(ALL_CFLAGS) -c $< -o $@

# Unit and integration tests (VM tests included, marked long; IVSOCK_SKIP_VM=1 skips them).
test: all
	$(Q)O=$(O) tests/run-tests.sh

# Everything under AddressSanitizer + UndefinedBehaviorSanitizer.
check-asan:
	$(Q)$(MAKE) --no-print-directory O=build-asan SANITIZE=address,undefined \
		CFLAGS="-O1 -g" all
	$(Q)O=build-asan IVSOCK_SANITIZER=asan tests/run-tests.sh unit

# Ring and concurrency tests under ThreadSanitizer.
check-tsan:
	$(Q)$(MAKE) --no-print-directory O=build-tsan SANITIZE=thread \
		CFLAGS="-O1 -g" $(TSAN_TESTS)
	$(Q)O=build-tsan IVSOCK_SANITIZER=tsan tests/run-tests.sh tsan

deps:
	$(Q)scripts/deps.sh

# libFuzzer harnesses (tests/fuzz/): clang build in build-fuzz/, each harness
# runs FUZZ_SECONDS (default 20); any crash, leak or timeout fails.
FUZZ_SECONDS ?= 20
.PHONY: check-fuzz
check-fuzz:
	$(Q)$(MAKE) --no-print-directory O=build-fuzz CC=clang \
		SANITIZE=fuzzer-no-link,address,undefined CFLAGS="-O1 -g" fuzz-targets
	$(Q)O=build-fuzz FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run-fuzz.sh

# Unit test programs and an ivsockd lifecycle under valgrind memcheck.
.PHONY: check-valgrind
check-valgrind: all
	$(Q)O=$(O) tests/valgrind/run-valgrind.sh

# Deps, build, lab, netperf kernel TCP vs ivsock (scripts/demo.sh).
.PHONY: demo
demo:
	$(Q)O=$(O) scripts/demo.sh

# What CI and the README run: dependencies, the build, every test suite, then
# the sanitizer builds. Stops at the first failing stage.
check:
	$(Q)scripts/deps.sh
	$(Q)$(MAKE) --no-print-directory all
	$(Q)O=$(O) tests/run-tests.sh unit integration vm
	$(Q)$(MAKE) --no-print-directory check-asan
	$(Q)$(MAKE) --no-print-directory check-tsan

install: all install-targets

clean:
	rm -rf build build-asan build-tsan build-fuzz $(CLEAN_EXTRA)

-include $(shell find $(O) -name '*.d' 2>/dev/null)
