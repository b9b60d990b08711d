// SPDX-License-Identifier: MIT
/* Unit tests of the agent's address selection (addrs.c) on synthetic
 * ifaddrs lists, plus one real getifaddrs()/rtnetlink smoke check. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <cmocka.h>

#include "../addrs.h"

struct fake {
	struct ifaddrs ifa;
	struct sockaddr_storage ss;
};

static void set(struct fake *f, struct fake *next, const char *ip, unsigned int flags)
{
	memset(f, 0, sizeof(*f));
	if (strchr(ip, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&f->ss;

		s6->sin6_family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&f->ss;

		s4->sin_family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
	}
	f->ifa.ifa_name = (char *)"eth0";
	f->ifa.ifa_flags = flags;
	f->ifa.ifa_addr = (struct sockaddr *)&f->ss;
	f->ifa.ifa_next = next ? &next->ifa : NULL;
}

static const char *str(const struct ivsock_addr *a, char *b)
{
	return ivsock_addr_str(a, b, 64);
}

static void test_selection_and_order(void **state)
{
	struct fake f[8];
	struct ivsock_mb_register reg;
	char b[64];

	(void)state;
	set(&f[0], &f[1], "fd00::5", IFF_UP);
	set(&f[1], &f[2], "127.0.0.1", IFF_UP | IFF_LOOPBACK);
	set(&f[2], &f[3], "10.1.0.2", IFF_UP);
	set(&f[3], &f[4], "fe80::1", IFF_UP);          /* link-local: skipped */
	set(&f[4], &f[5], "10.9.9.9", 0);              /* interface down */
	set(&f[5], &f[6], "10.1.0.2", IFF_UP);         /* duplicate */
	set(&f[6], &f[7], "::1", IFF_UP);
	set(&f[7], NULL, "192.168.7.1", IFF_UP);
	memset(&reg, 0xaa, sizeof(reg));
	assert_int_equal(agent_addrs_from_list(&f[0].ifa, &reg), 3);
	assert_string_equal(str(&reg.addrs[0], b), "10.1.0.2");      /* IPv4 first */
	assert_string_equal(str(&reg.addrs[1], b), "192.168.7.1");
	assert_string_equal(str(&reg.addrs[2], b), "fd00::5");
	assert_int_equal(reg.addrs[3].family, IVSOCK_AF_NONE);       /* rest zeroed */
}

static void test_capacity(void **state)
{
	struct fake f[12];
	struct ivsock_mb_register reg;
	char ip[32];

	(void)state;
	for (int i = 11; i >= 0; i--) {
		snprintf(ip, sizeof(ip), "10.0.0.%d", i + 1);
		set(&f[i], i < 11 ? &f[i + 1] : NULL, ip, IFF_UP);
	}
	assert_int_equal(agent_addrs_from_list(&f[0].ifa, &reg), IVSOCK_VM_MAX_ADDRS);
	assert_int_equal(agent_addrs_from_list(NULL, &reg), 0);
}

static void test_real_system(void **state)
{
	struct ivsock_mb_register reg;
	int fd;

	(void)state;
	assert_true(agent_addrs_collect(&reg) >= 0);
	for (uint32_t i = 0; i < reg.naddrs; i++)
		assert_false(reg.addrs[i].family == IVSOCK_AF_INET && reg.addrs[i].bytes[0] == 127);
	fd = agent_addrs_watch_open();
	if (fd >= 0) {
		assert_true(agent_addrs_watch_drain(fd) >= 0);
		close(fd);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_selection_and_order),
		cmocka_unit_test(test_capacity),
		cmocka_unit_test(test_real_system),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
