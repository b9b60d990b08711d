# SPDX-License-Identifier: MIT
# libivsock-proto.a: region layout, rings, tables, doorbells, codecs.

PROTO_SRCS := $(wildcard protocol/src/*.c)
PROTO_OBJS := $(PROTO_SRCS:%.c=$(O)/%.o)
PROTO_LIB  := $(O)/protocol/libivsock-proto.a

$(PROTO_LIB): $(PROTO_OBJS)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && $(AR) rcs $@ $^

ALL  += $(PROTO_LIB)
LIBS += $(PROTO_LIB)
