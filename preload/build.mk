# SPDX-License-Identifier: MIT
# libivsock.so (the LD_PRELOAD shim: socket core sock_*.c + multiplexers
# mux_*.c, everything in preload/*.c), ivsock-run, the shim's test tools
# (checksummed stream client/server, shim-hostile, shim-users, conn-herd,
# shim-env.sh)
# and its unit tests.

SHIM_SRCS := $(wildcard preload/*.c)
SHIM_OBJS := $(SHIM_SRCS:%.c=$(O)/%.o)
SHIM_LIB  := $(O)/preload/libivsock.so
SHIM_RUN  := $(O)/preload/ivsock-run
SHIM_TOOLS := $(O)/preload/tests/shim-stream $(O)/preload/tests/shim-hostile \
	      $(O)/preload/tests/shim-users $(O)/preload/tests/switch-api \
	      $(O)/preload/tests/conn-herd
SHIM_UNIT_SRCS := $(wildcard preload/tests/test_shim_*.c)
SHIM_UNIT := $(SHIM_UNIT_SRCS:preload/tests/%.c=$(O)/tests/unit/%)

$(SHIM_OBJS): ALL_CFLAGS += -fvisibility=hidden -Ipreload
$(SHIM_UNIT_SRCS:preload/tests/%.c=$(O)/preload/tests/%.o): ALL_CFLAGS += -Ipreload

# The protocol code linked in reaches these through sock_fdguard.c, which
# keeps the fds it makes out of the program's way (and eventfd() of the
# shim's own code too).
SHIM_WRAP := $(foreach f,socket eventfd close read write ioctl fcntl recvmsg sendmsg,-Wl,--wrap=$(f))

$(SHIM_LIB): $(SHIM_OBJS) $(PROTO_LIB) preload/libivsock.map
	$(call msg,LD,$@)
	$(Q)$(CC) -shared $(ALL_LDFLAGS) -Wl,--version-script=preload/libivsock.map \
		$(SHIM_WRAP) -Wl,-z,defs -o $@ $(SHIM_OBJS) $(PROTO_LIB) -ldl -lpthread

$(SHIM_RUN): preload/ivsock-run
	@mkdir -p $(dir $@)
	$(Q)cp $< $@ && chmod +x $@

$(O)/preload/tests/shim-stream: $(O)/preload/tests/shim_stream.o
	$(call msg,LD,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ -lpthread

$(O)/preload/tests/switch-api: $(O)/preload/tests/switch_api.o
	$(call msg,LD,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ -lpthread

$(O)/preload/tests/shim-hostile: $(O)/preload/tests/shim_hostile.o
	$(call msg,LD,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^

$(O)/preload/tests/shim-users: $(O)/preload/tests/shim_users.o
	$(call msg,LD,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^

$(O)/preload/tests/conn-herd: $(O)/preload/tests/conn_herd.o
	$(call msg,LD,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^

$(SHIM_UNIT): $(O)/tests/unit/%: $(O)/preload/tests/%.o $(PROTO_LIB) | $(SHIM_LIB) $(SHIM_TOOLS)
	$(call msg,LD,$@)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $(O)/preload/tests/$*.o $(PROTO_LIB) -lcmocka -lpthread

.PHONY: install-preload
install-preload: $(SHIM_LIB) $(SHIM_RUN)
	install -d $(DESTDIR)$(PREFIX)/lib/ivsock $(DESTDIR)$(PREFIX)/bin \
		$(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man7
	install -m 0755 $(SHIM_LIB) $(DESTDIR)$(PREFIX)/lib/ivsock/libivsock.so
	install -m 0755 preload/ivsock-run $(DESTDIR)$(PREFIX)/bin/ivsock-run
	install -m 0644 docs/ivsock-run.1 $(DESTDIR)$(PREFIX)/share/man/man1/ivsock-run.1
	install -m 0644 docs/libivsock.7 $(DESTDIR)$(PREFIX)/share/man/man7/libivsock.7

install-targets: install-preload

ALL   += $(SHIM_LIB) $(SHIM_RUN) $(SHIM_TOOLS) $(SHIM_UNIT)
TESTS += $(SHIM_UNIT)
-include preload/mux.mk
