# SPDX-License-Identifier: MIT
# Guest side: ivsock-agent (guestdrv/agent), its unit tests, the
# ivsock-stream test tool, static builds for initramfs guests, and install.
# The kernel module has its own Kbuild Makefile: `make kmod` (not in `all`).

AGENT_SRCS := $(filter-out guestdrv/agent/main.c,$(wildcard guestdrv/agent/*.c))
AGENT_OBJS := $(AGENT_SRCS:%.c=$(O)/%.o)
AGENT_LIB  := $(O)/guestdrv/agent/libagent.a
AGENT_BIN  := $(O)/guestdrv/agent/ivsock-agent
AGENT_LDLIBS := -ljansson

STREAM_BIN := $(O)/tests/tools/ivsock-stream
SNOOP_BIN  := $(O)/tests/tools/ivsock-snoop
AGENT_TOOL_SRCS := $(wildcard tests/tools/agent-*.c)
AGENT_TOOLS := $(AGENT_TOOL_SRCS:tests/tools/%.c=$(O)/tests/tools/%)

AGENT_TEST_SRCS := $(wildcard guestdrv/agent/tests/test_agent_*.c)
AGENT_TESTS := $(AGENT_TEST_SRCS:guestdrv/agent/tests/%.c=$(O)/tests/unit/%)
# Objects reached only through pattern rules: keep them (no rebuild churn).
.SECONDARY: $(AGENT_TEST_SRCS:%.c=$(O)/%.o) $(AGENT_TOOL_SRCS:%.c=$(O)/%.o)

# Statically linked copies for busybox guests (tests/vm): `make guest-static`.
GUEST_STATIC_DIR := $(O)/guest-static
GUEST_STATIC := $(GUEST_STATIC_DIR)/ivsock-agent $(GUEST_STATIC_DIR)/ivsock-stream \
		$(GUEST_STATIC_DIR)/ivsock-snoop

$(AGENT_LIB): $(AGENT_OBJS)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(AGENT_BIN): $(O)/guestdrv/agent/main.o $(AGENT_LIB) $(PROTO_LIB)
	$(call msg,LD,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(AGENT_LDLIBS)

$(STREAM_BIN): $(O)/tests/tools/ivsock-stream.o $(PROTO_LIB)
	$(call msg,LD,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ -lpthread

$(SNOOP_BIN): $(O)/tests/tools/ivsock-snoop.o $(PROTO_LIB)
	$(call msg,LD,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ -lpthread

$(O)/tests/tools/agent-%: $(O)/tests/tools/agent-%.o $(PROTO_LIB)
	$(call msg,LD,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ -lpthread

# A hostile broker client (tests/integration/broker-hostile.sh).
BROKER_HOSTILE := $(O)/tests/tools/broker-hostile
$(BROKER_HOSTILE): $(O)/tests/tools/broker-hostile.o $(PROTO_LIB)
	$(call msg,LD,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ -lpthread

$(O)/tests/unit/test_agent_%: $(O)/guestdrv/agent/tests/test_agent_%.o $(AGENT_LIB) $(PROTO_LIB)
	$(call msg,LD,$@)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(AGENT_LDLIBS) -lcmocka -lpthread

$(GUEST_STATIC_DIR)/ivsock-agent: $(O)/guestdrv/agent/main.o $(AGENT_LIB) $(PROTO_LIB)
	$(call msg,LD,$@)
	@mkdir -p $(dir $@)
	$(Q)$(CC) -static -o $@ $^ $(AGENT_LDLIBS)

$(GUEST_STATIC_DIR)/ivsock-stream: $(O)/tests/tools/ivsock-stream.o $(PROTO_LIB)
	$(call msg,LD,$@)
	@mkdir -p $(dir $@)
	$(Q)$(CC) -static -o $@ $^ -lpthread

$(GUEST_STATIC_DIR)/ivsock-snoop: $(O)/tests/tools/ivsock-snoop.o $(PROTO_LIB)
	$(call msg,LD,$@)
	@mkdir -p $(dir $@)
	$(Q)$(CC) -static -o $@ $^ -lpthread

.PHONY: guest-static kmod install-guestdrv
guest-static: $(GUEST_STATIC)

kmod:
	$(MAKE) -C guestdrv/kmod

install-guestdrv: $(AGENT_BIN)
	install -D -m 0755 $(AGENT_BIN) $(DESTDIR)$(PREFIX)/sbin/ivsock-agent
	install -D -m 0644 guestdrv/ivsock-agent.service \
		$(DESTDIR)$(PREFIX)/lib/systemd/system/ivsock-agent.service
	install -D -m 0644 docs/ivsock-agent.8 $(DESTDIR)$(PREFIX)/share/man/man8/ivsock-agent.8
	install -D -m 0644 docs/ivsock.4 $(DESTDIR)$(PREFIX)/share/man/man4/ivsock.4
	install -D -m 0644 guestdrv/kmod/ivsock.conf \
		$(DESTDIR)$(PREFIX)/lib/modules-load.d/ivsock.conf

install-targets: install-guestdrv

ALL   += $(AGENT_BIN) $(STREAM_BIN) $(SNOOP_BIN) $(AGENT_TOOLS) $(BROKER_HOSTILE) $(AGENT_TESTS)
TESTS += $(AGENT_TESTS)
