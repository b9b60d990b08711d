// SPDX-License-Identifier: MIT
/* Unit tests of ivsockd's ring classes (layout v4): ring_classes =
 * size:share,... in the ini file and the --domain quick syntax (with '+'),
 * what ring_size means with and without it, and the region parameters a
 * domain formats with. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "../config.h"

static void test_parse_classes(void **state)
{
	struct dom_conf d;

	(void)state;
	dom_conf_defaults(&d, "x");
	assert_int_equal(conf_parse_classes("4K:10,32K:20,128K:50,1M:20", &d), 0);
	assert_int_equal(d.nclasses, 4);
	assert_int_equal(d.class_size[0], 4096);
	assert_int_equal(d.class_size[3], 1U << 20);
	assert_int_equal(d.class_share[2], 50);
	assert_int_equal(conf_parse_classes("64K:100", &d), 0);
	assert_int_equal(d.nclasses, 1);
	assert_int_equal(d.class_size[1], 0);
	assert_int_equal(conf_parse_classes("4K:10+8K:0", &d), 0); /* quick syntax */
	assert_int_equal(d.nclasses, 2);
	/* refused: not a power of two, below 1K, not increasing, a
	 * share over 100 or a sum over 100, too many, garbage */
	assert_int_equal(conf_parse_classes("12K:10", &d), -EINVAL);
	assert_int_equal(conf_parse_classes("512:10", &d), -EINVAL);
	assert_int_equal(conf_parse_classes("1K:10,2K:10", &d), 0); /* one page, two */
	assert_int_equal(conf_parse_classes("8K:10,4K:10", &d), -EINVAL);
	assert_int_equal(conf_parse_classes("8K:10,8K:10", &d), -EINVAL);
	assert_int_equal(conf_parse_classes("8K:101", &d), -EINVAL);
	assert_int_equal(conf_parse_classes("4K:60,8K:41", &d), -EINVAL);
	assert_int_equal(conf_parse_classes("4K:1,8K:1,16K:1,32K:1,64K:1", &d), -EINVAL);
	assert_int_equal(conf_parse_classes("4K", &d), -EINVAL);
	assert_int_equal(conf_parse_classes("", &d), -EINVAL);
	assert_int_equal(conf_parse_classes("4K:x", &d), -EINVAL);
	/* a refused value leaves the last good one */
	assert_int_equal(d.nclasses, 2);
}

static void test_region_params(void **state)
{
	struct ivsock_region_params p;
	struct dom_conf d;

	(void)state;
	/* neither: the default classes, default 128K */
	dom_conf_defaults(&d, "x");
	d.max_vms = 8;
	assert_int_equal(conf_region_params(&d, &p), 0);
	assert_int_equal(p.nclasses, 4);
	assert_int_equal(p.class_size[p.default_class], 128 * 1024);
	assert_int_equal(p.vm_cap, 8);
	/* ring_size alone: one class of that size (the v3 region) */
	d.ring_size = 16384;
	d.ring_size_set = true;
	assert_int_equal(conf_region_params(&d, &p), 0);
	assert_int_equal(p.nclasses, 1);
	assert_int_equal(p.class_size[0], 16384);
	assert_int_equal(p.class_share[0], 100);
	/* both: ring_size picks the default class, and must be one */
	assert_int_equal(conf_parse_classes("4K:20,16K:60,64K:20", &d), 0);
	assert_int_equal(conf_region_params(&d, &p), 0);
	assert_int_equal(p.nclasses, 3);
	assert_int_equal(p.default_class, 1);
	d.ring_size = 32768;
	assert_int_equal(conf_region_params(&d, &p), -EINVAL);
	/* classes alone: the largest class <= 128K is the default */
	d.ring_size_set = false;
	d.ring_size = 128 * 1024;
	assert_int_equal(conf_region_params(&d, &p), 0);
	assert_int_equal(p.default_class, 2);
	assert_int_equal(conf_parse_classes("256K:50,1M:50", &d), 0);
	assert_int_equal(conf_region_params(&d, &p), 0);
	assert_int_equal(p.default_class, 0);
}

static void test_quick_and_validate(void **state)
{
	struct daemon_conf *c = malloc(sizeof(*c));
	char err[256] = "";

	(void)state;
	conf_defaults(c);
	assert_int_equal(conf_add_quick_domain(c, "t1=/run/x.sock,size=64M,"
					       "ring_classes=4K:10+64K:90,ring_size=64K",
					       err, sizeof(err)), 0);
	assert_int_equal(c->domains[0].nclasses, 2);
	assert_int_equal(c->domains[0].ring_size, 65536);
	assert_int_equal(conf_validate(c, err, sizeof(err)), 0);
	/* a ring_size that is none of the classes is refused at load */
	c->domains[0].ring_size = 8192;
	assert_int_equal(conf_validate(c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "ring_classes"));
	free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_classes),
		cmocka_unit_test(test_region_params),
		cmocka_unit_test(test_quick_and_validate),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
