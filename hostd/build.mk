# SPDX-License-Identifier: MIT
# hostd: ivsockd (the host daemon), ivsockctl (its CLI), their unit tests,
# the fake ivshmem client used by the integration and VM tests, and install.

HOSTD_DAEMON_SRCS := hostd/main.c hostd/log.c hostd/config.c hostd/region.c \
	hostd/peers.c hostd/identify.c hostd/domain.c hostd/mailbox.c \
	hostd/lifecycle.c hostd/fdstore.c hostd/control.c hostd/ctl_json.c hostd/evloop.c \
	hostd/policy.c
HOSTD_DAEMON_OBJS := $(HOSTD_DAEMON_SRCS:%.c=$(O)/%.o)
HOSTD_LIBS        := $(shell pkg-config --libs inih jansson libsystemd 2>/dev/null || echo -linih -ljansson -lsystemd)

IVSOCKD   := $(O)/hostd/ivsockd
IVSOCKCTL := $(O)/hostd/ivsockctl
HOSTD_FAKE_CLIENT := $(O)/tests/tools/ivshmem-fake-client

$(IVSOCKD): $(HOSTD_DAEMON_OBJS) $(PROTO_LIB)
	$(call msg,LD,$@)
	$(Q)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $^ $(HOSTD_LIBS)

$(IVSOCKCTL): $(O)/hostd/ivsockctl.o $(PROTO_LIB)
	$(call msg,LD,$@)
	$(Q)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $^ -ljansson

$(HOSTD_FAKE_CLIENT): $(O)/tests/tools/ivshmem-fake-client.o $(PROTO_LIB)
	$(call msg,LD,$@)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $^

# Unit tests: hostd/tests/test_hostd_X.c -> $(O)/tests/unit/test_hostd_X,
# linked with the daemon's objects minus main.o.
HOSTD_TEST_SRCS := $(wildcard hostd/tests/test_hostd_*.c)
HOSTD_TESTS     := $(HOSTD_TEST_SRCS:hostd/tests/%.c=$(O)/tests/unit/%)
HOSTD_LIB_OBJS  := $(filter-out $(O)/hostd/main.o,$(HOSTD_DAEMON_OBJS))

$(O)/tests/unit/test_hostd_%: $(O)/hostd/tests/test_hostd_%.o $(HOSTD_LIB_OBJS) $(PROTO_LIB)
	$(call msg,LD,$@)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $^ $(HOSTD_LIBS) -lcmocka

# The unit tests that run the real daemon need it (and the fake client) built.
$(HOSTD_TESTS): | $(IVSOCKD) $(IVSOCKCTL) $(HOSTD_FAKE_CLIENT)

ALL   += $(IVSOCKD) $(IVSOCKCTL) $(HOSTD_FAKE_CLIENT) $(HOSTD_TESTS)
TESTS += $(HOSTD_TESTS)
PROGRAMS += $(IVSOCKD) $(IVSOCKCTL)

.PHONY: install-hostd
install-targets: install-hostd
install-hostd: $(IVSOCKD) $(IVSOCKCTL)
	install -D -m 0755 $(IVSOCKD) $(DESTDIR)$(PREFIX)/sbin/ivsockd
	install -D -m 0755 $(IVSOCKCTL) $(DESTDIR)$(PREFIX)/bin/ivsockctl
	install -D -m 0644 hostd/ivsockd.service $(DESTDIR)$(PREFIX)/lib/systemd/system/ivsockd.service
	sed -i 's|@SBINDIR@|$(PREFIX)/sbin|' $(DESTDIR)$(PREFIX)/lib/systemd/system/ivsockd.service
	install -D -m 0644 docs/ivsockd.8 $(DESTDIR)$(PREFIX)/share/man/man8/ivsockd.8
	install -D -m 0644 docs/ivsockctl.8 $(DESTDIR)$(PREFIX)/share/man/man8/ivsockctl.8
	install -D -m 0644 docs/ivsockd.conf.5 $(DESTDIR)$(PREFIX)/share/man/man5/ivsockd.conf.5
	@if [ -e $(DESTDIR)/etc/ivsock/ivsockd.conf ]; then \
		echo "  keep    $(DESTDIR)/etc/ivsock/ivsockd.conf (exists)"; \
	else \
		install -D -m 0644 hostd/ivsockd.conf $(DESTDIR)/etc/ivsock/ivsockd.conf; \
	fi

# The hardening test reads the shipped hostd/ivsockd.conf.
$(O)/hostd/tests/test_hostd_hardening.o: BASE_CFLAGS += -DSRCDIR=\"$(CURDIR)\"
