// SPDX-License-Identifier: MIT
/*
 * Unit tests of the wire address helpers (protocol/src/addr.c): conversion
 * from sockaddr (v4-mapped IPv6 becomes IPv4), comparison, formatting and
 * the tuple hash.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include "testutil.h"

static void test_from_sockaddr(void **state)
{
	struct sockaddr_in in = { .sin_family = AF_INET, .sin_port = htons(8080) };
	struct sockaddr_in6 in6 = { .sin6_family = AF_INET6, .sin6_port = htons(443) };
	struct sockaddr_un un = { .sun_family = AF_UNIX };
	struct ivsock_addr a;
	uint16_t port = 0;
	char buf[64];

	(void)state;
	inet_pton(AF_INET, "192.0.2.7", &in.sin_addr);
	assert_int_equal(ivsock_addr_from_sockaddr(&a, &port, (struct sockaddr *)&in, sizeof(in)), 0);
	assert_int_equal(a.family, IVSOCK_AF_INET);
	assert_int_equal(port, 8080);
	assert_string_equal(ivsock_addr_str(&a, buf, sizeof(buf)), "192.0.2.7");
	assert_int_equal(ivsock_addr_from_sockaddr(&a, &port, (struct sockaddr *)&in, 4), -EAFNOSUPPORT);

	inet_pton(AF_INET6, "2001:db8::1", &in6.sin6_addr);
	assert_int_equal(ivsock_addr_from_sockaddr(&a, &port, (struct sockaddr *)&in6, sizeof(in6)), 0);
	assert_int_equal(a.family, IVSOCK_AF_INET6);
	assert_int_equal(port, 443);
	assert_string_equal(ivsock_addr_str(&a, buf, sizeof(buf)), "2001:db8::1");

	inet_pton(AF_INET6, "::ffff:192.0.2.7", &in6.sin6_addr);
	assert_int_equal(ivsock_addr_from_sockaddr(&a, NULL, (struct sockaddr *)&in6, sizeof(in6)), 0);
	assert_int_equal(a.family, IVSOCK_AF_INET);
	assert_string_equal(ivsock_addr_str(&a, buf, sizeof(buf)), "192.0.2.7");

	assert_int_equal(ivsock_addr_from_sockaddr(&a, &port, (struct sockaddr *)&un, sizeof(un)),
			 -EAFNOSUPPORT);
	a.family = 9;
	assert_string_equal(ivsock_addr_str(&a, buf, sizeof(buf)), "?");
}

static void test_equal_any(void **state)
{
	struct ivsock_addr a = { .family = IVSOCK_AF_INET, .bytes = { 1, 2, 3, 4 } };
	struct ivsock_addr b = a, z4 = { .family = IVSOCK_AF_INET }, z6 = { .family = IVSOCK_AF_INET6 };

	(void)state;
	assert_true(ivsock_addr_equal(&a, &b));
	b.bytes[10] = 9; /* beyond the 4 bytes of IPv4: ignored */
	assert_true(ivsock_addr_equal(&a, &b));
	b.bytes[3] = 5;
	assert_false(ivsock_addr_equal(&a, &b));
	b = a;
	b.family = IVSOCK_AF_INET6;
	assert_false(ivsock_addr_equal(&a, &b));
	assert_true(ivsock_addr_is_any(&z4));
	assert_true(ivsock_addr_is_any(&z6));
	assert_false(ivsock_addr_is_any(&a));
	z6.bytes[15] = 1;
	assert_false(ivsock_addr_is_any(&z6));
}

static void test_tuple_hash(void **state)
{
	struct ivsock_tuple t1 = {
		.src = { .family = IVSOCK_AF_INET, .bytes = { 10, 0, 0, 1 } },
		.dst = { .family = IVSOCK_AF_INET, .bytes = { 10, 0, 0, 2 } },
		.sport = 40000, .dport = 80,
	}, t2 = t1;

	(void)state;
	assert_int_equal(ivsock_tuple_hash(&t1), ivsock_tuple_hash(&t2));
	t2.sport++;
	assert_true(ivsock_tuple_hash(&t1) != ivsock_tuple_hash(&t2));
	t2 = t1;
	t2.dport = 81;
	assert_true(ivsock_tuple_hash(&t1) != ivsock_tuple_hash(&t2));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_from_sockaddr),
		cmocka_unit_test(test_equal_any),
		cmocka_unit_test(test_tuple_hash),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
