// SPDX-License-Identifier: MIT
/*
 * Unit tests of the control message framing (protocol/src/msg.c): every
 * malformed header is refused with the documented -errno.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "ivsock/msg.h"
#include "testutil.h"

struct buf {
	struct ivsock_msg_hdr h;
	uint8_t payload[64];
};

static void test_init_check(void **state)
{
	struct buf b;

	(void)state;
	memset(&b, 0xee, sizeof(b));
	ivsock_msg_init(&b.h, IVSOCK_MB_PING, 0, 42);
	assert_int_equal(b.h.magic, IVSOCK_MSG_MAGIC);
	assert_int_equal(b.h.version, IVSOCK_MSG_VERSION);
	assert_int_equal(b.h.seq, 42);
	assert_int_equal(b.h.status, 0);
	assert_int_equal(b.h.reserved, 0);
	assert_int_equal(ivsock_msg_check(&b, sizeof(b.h), 0, 0), 0);
	assert_int_equal(ivsock_msg_check(&b, sizeof(b.h), IVSOCK_MB_PING, 0), 0);
	ivsock_msg_init(&b.h, IVSOCK_AG_PEER_FD, sizeof(struct ivsock_ag_peer), 1);
	assert_int_equal(ivsock_msg_check(&b, sizeof(b.h) + 8, IVSOCK_AG_PEER_FD, 8), 0);
	/* wire layout: 24-byte header, fixed offsets */
	assert_int_equal(sizeof(struct ivsock_msg_hdr), 24);
	assert_int_equal(offsetof(struct ivsock_msg_hdr, len), 8);
}

static void test_refusals(void **state)
{
	struct buf b;

	(void)state;
	ivsock_msg_init(&b.h, IVSOCK_MB_REGISTER, 16, 1);
	assert_int_equal(ivsock_msg_check(NULL, 40, 0, 0), -EMSGSIZE);
	assert_int_equal(ivsock_msg_check(&b, sizeof(b.h) - 1, 0, 0), -EMSGSIZE);
	assert_int_equal(ivsock_msg_check(&b, IVSOCK_MSG_MAX + 1, 0, 0), -EMSGSIZE);
	/* length must match exactly */
	assert_int_equal(ivsock_msg_check(&b, sizeof(b.h) + 15, 0, 0), -EMSGSIZE);
	assert_int_equal(ivsock_msg_check(&b, sizeof(b.h) + 17, 0, 0), -EMSGSIZE);
	assert_int_equal(ivsock_msg_check(&b, sizeof(b.h) + 16, 0, 0), 0);
	/* type and minimum length */
	assert_int_equal(ivsock_msg_check(&b, sizeof(b.h) + 16, IVSOCK_MB_PING, 0), -EBADMSG);
	assert_int_equal(ivsock_msg_check(&b, sizeof(b.h) + 16, IVSOCK_MB_REGISTER, 17), -EMSGSIZE);
	assert_int_equal(ivsock_msg_check(&b, sizeof(b.h) + 16, IVSOCK_MB_REGISTER, 16), 0);
	b.h.magic ^= 1;
	assert_int_equal(ivsock_msg_check(&b, sizeof(b.h) + 16, 0, 0), -EPROTO);
	b.h.magic ^= 1;
	b.h.version = 2;
	assert_int_equal(ivsock_msg_check(&b, sizeof(b.h) + 16, 0, 0), -EPROTO);
	b.h.version = IVSOCK_MSG_VERSION;
	b.h.type = 0;
	assert_int_equal(ivsock_msg_check(&b, sizeof(b.h) + 16, 0, 0), -EPROTO);
	b.h.type = IVSOCK_MB_REGISTER;
	b.h.reserved = 1;
	assert_int_equal(ivsock_msg_check(&b, sizeof(b.h) + 16, 0, 0), -EPROTO);
	b.h.reserved = 0;
	/* a huge len cannot wrap the size arithmetic */
	b.h.len = UINT32_MAX;
	assert_int_equal(ivsock_msg_check(&b, sizeof(b.h) + 16, 0, 0), -EMSGSIZE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_check),
		cmocka_unit_test(test_refusals),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
