// SPDX-License-Identifier: MIT
/*
 * Fuzzes ivsock_msg_check, the framing check every control message (VM
 * mailbox, shim <-> agent, ivsockctl <-> ivsockd) goes through, and checks
 * that whatever it accepts really is one well-formed message.
 */
#include <errno.h>

#include "ivsock/msg.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	uint16_t expect = fuzz_u8(&in) & 7;    /* 0 = any type, else 1..7 */
	uint32_t min_len = fuzz_u16(&in) % 512;
	struct ivsock_msg_hdr h;
	uint8_t *copy;
	int rc;

	/* An exact-size heap copy: ASan catches any read past n. */
	copy = malloc(in.n ? in.n : 1);
	FUZZ_ASSERT(copy);
	memcpy(copy, in.p, in.n);
	rc = ivsock_msg_check(copy, in.n, expect, min_len);
	FUZZ_ASSERT(rc == 0 || rc == -EPROTO || rc == -EBADMSG || rc == -EMSGSIZE);
	if (rc == 0) {
		memcpy(&h, copy, sizeof(h));
		FUZZ_ASSERT(in.n >= sizeof(h) && in.n <= IVSOCK_MSG_MAX);
		FUZZ_ASSERT(h.magic == IVSOCK_MSG_MAGIC && h.version == IVSOCK_MSG_VERSION);
		FUZZ_ASSERT(h.type != 0 && h.reserved == 0);
		FUZZ_ASSERT((size_t)h.len == in.n - sizeof(h));
		if (expect)
			FUZZ_ASSERT(h.type == expect && h.len >= min_len);
		/* Any type passes the "any" check as well. */
		FUZZ_ASSERT(ivsock_msg_check(copy, in.n, 0, 0) == 0);
	}
	free(copy);
	return 0;
}
