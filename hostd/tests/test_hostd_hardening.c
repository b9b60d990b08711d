// SPDX-License-Identifier: MIT
/* Unit tests for ivsockd's hardening: UTF-8 escaping of names read from the
 * region, admission policy parsing (allow_users/allow_groups), refusal of
 * file backings, the shipped configuration file, region fd checks and
 * fd-store names. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <cmocka.h>

#include "../config.h"
#include "../ctl_json.h"
#include "../fdstore.h"
#include "../ivsockd.h"

#ifndef SRCDIR
#define SRCDIR "."   /* tests/run-tests.sh runs from the top of the tree */
#endif

static const char *san(const char *in, size_t len)
{
	static char out[256];

	ctl_utf8_sanitize(in, len, out, sizeof(out));
	return out;
}

static void test_utf8(void **state)
{
	json_t *j;

	(void)state;
	assert_string_equal(san("plain-vm", 8), "plain-vm");
	assert_string_equal(san("caf\xc3\xa9", 5), "caf\xc3\xa9");                /* valid é */
	assert_string_equal(san("\xf0\x9f\x98\x80", 4), "\xf0\x9f\x98\x80");      /* U+1F600 */
	assert_string_equal(san("v\xc3\xe9\xff" "A", 5),
			    "v\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" "A");
	assert_string_equal(san("\xc0\xaf", 2), "\xef\xbf\xbd\xef\xbf\xbd");      /* overlong */
	assert_string_equal(san("\xed\xa0\x80", 3),                               /* surrogate */
			    "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
	assert_string_equal(san("\xf4\x90\x80\x80", 4),                           /* > U+10FFFF */
			    "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
	assert_string_equal(san("ab\xe2\x82", 4), "ab\xef\xbf\xbd\xef\xbf\xbd");  /* truncated */
	assert_string_equal(san("ab\0cd", 5), "ab");
	/* Whatever comes out, jansson takes it. */
	j = json_string(san("\x80\x81\xfe\xff\xc3", 5));
	assert_non_null(j);
	json_decref(j);
	{
		char small[8];

		/* Never overruns, always terminated. */
		ctl_utf8_sanitize("\xff\xff\xff\xff", 4, small, sizeof(small));
		assert_string_equal(small, "\xef\xbf\xbd\xef\xbf\xbd");
	}
}

static void test_admission(void **state)
{
	struct daemon_conf c;
	char err[512];

	(void)state;
	conf_defaults(&c);
	assert_int_equal(conf_add_quick_domain(&c, "a=/tmp/a.sock", err, sizeof(err)), 0);
	assert_true(conf_admits(&c.domains[0], 0, 0));             /* root by default */
	assert_false(conf_admits(&c.domains[0], 65534, 65534));    /* nobody is not */
	assert_int_equal(conf_add_quick_domain(&c, "b=/tmp/b.sock,users=1234+nobody,groups=777",
					       err, sizeof(err)), 0);
	assert_true(conf_admits(&c.domains[1], 1234, 1));
	assert_true(conf_admits(&c.domains[1], 65534, 1));
	assert_true(conf_admits(&c.domains[1], 42, 777));
	assert_false(conf_admits(&c.domains[1], 0, 0));            /* explicit list: no root */
	assert_int_equal(conf_add_quick_domain(&c, "c=/tmp/c.sock,users=*", err, sizeof(err)), 0);
	assert_true(conf_admits(&c.domains[2], 4242, 4242));
	assert_int_equal(conf_add_quick_domain(&c, "d=/tmp/d.sock,register_timeout=0", err,
					       sizeof(err)), 0);
	assert_int_equal(c.domains[3].register_ms, 0);
	assert_int_equal(c.domains[0].register_ms, 30000);
	assert_int_equal(conf_validate(&c, err, sizeof(err)), 0);
}

static void test_backing(void **state)
{
	struct daemon_conf c;
	char err[512];

	(void)state;
	conf_defaults(&c);
	assert_int_equal(conf_add_quick_domain(&c, "a=/tmp/a.sock,backing=/dev/shm/x", err,
					       sizeof(err)), 0);
	assert_int_equal(conf_validate(&c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "only backing=memfd or backing=hugetlb"));
	conf_defaults(&c);
	assert_int_equal(conf_add_quick_domain(&c, "a=/tmp/a.sock,backing=hugetlb", err,
					       sizeof(err)), 0);
	assert_int_equal(conf_validate(&c, err, sizeof(err)), 0);
}

static void test_shipped_conf(void **state)
{
	struct daemon_conf c;
	char err[512] = "";

	(void)state;
	conf_defaults(&c);
	assert_int_equal(conf_load(&c, SRCDIR "/hostd/ivsockd.conf", err, sizeof(err)), 0);
	assert_int_equal(conf_validate(&c, err, sizeof(err)), 0);
	assert_int_equal(c.ctl_idle_ms, 30000);
	assert_true(conf_admits(&c.domains[0], 0, 0));
	assert_int_equal(c.domains[0].ngroups, 0);
}

static void test_region_fd(void **state)
{
	char err[256];
	int fd;

	(void)state;
	fd = memfd_create("t", MFD_ALLOW_SEALING);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	assert_int_equal(region_check_fd(fd, 1 << 20, err, sizeof(err)), -EPERM);  /* unsealed */
	assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL), 0);
	assert_int_equal(region_check_fd(fd, 1 << 20, err, sizeof(err)), 0);
	assert_int_equal(region_check_fd(fd, 2 << 20, err, sizeof(err)), -EEXIST);
	assert_int_equal(ftruncate(fd, 4096), -1);
	assert_int_equal(errno, EPERM);
	close(fd);
	fd = open("/dev/null", O_RDWR);
	assert_int_equal(region_check_fd(fd, 1 << 20, err, sizeof(err)), -EINVAL);
	close(fd);
}

static void test_fdnames(void **state)
{
	(void)state;
	assert_true(fdstore_name_ok("tenant1.c12.v3"));
	assert_false(fdstore_name_ok("a:b"));
	assert_false(fdstore_name_ok("a b"));
	assert_false(fdstore_name_ok(""));
	assert_false(fdstore_name_ok("\xc3\xa9"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_admission),
		cmocka_unit_test(test_backing),
		cmocka_unit_test(test_shipped_conf),
		cmocka_unit_test(test_region_fd),
		cmocka_unit_test(test_fdnames),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
