// SPDX-License-Identifier: MIT
/*
 * Unit tests of the listener registry (protocol/src/listener.c): exact and
 * wildcard matches, IPv4 on an IPv6 wildcard, V6ONLY, per-VM scope, removal
 * and cleanup by owner.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "ivsock/listener.h"
#include "testutil.h"

static int setup(void **state)
{
	struct test_region *t = calloc(1, sizeof(*t));
	struct ivsock_region_params p;

	test_params_small(&p);
	assert_int_equal(test_region_map(t, 1U << 20, &p), 0);
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	test_region_unmap(*state);
	free(*state);
	return 0;
}

static const struct ivsock_addr A4 = { .family = IVSOCK_AF_INET, .bytes = { 10, 0, 0, 1 } };
static const struct ivsock_addr B4 = { .family = IVSOCK_AF_INET, .bytes = { 10, 0, 0, 2 } };
static const struct ivsock_addr ANY4 = { .family = IVSOCK_AF_INET };
static const struct ivsock_addr ANY6 = { .family = IVSOCK_AF_INET6 };
static const struct ivsock_addr A6 = { .family = IVSOCK_AF_INET6, .bytes = { 0xfd, [15] = 1 } };

static void test_exact(void **state)
{
	struct test_region *t = *state;
	uint32_t g;
	int i;

	i = ivsock_listener_add(&t->rg, 1, 9, &A4, 80, 0, &g);
	assert_true(i >= 0);
	assert_int_equal(ivsock_listener_find(&t->rg, 1, &A4, 80), i);
	assert_int_equal(ivsock_listener_find(&t->rg, 1, &A4, 81), -ENOENT);
	assert_int_equal(ivsock_listener_find(&t->rg, 1, &B4, 80), -ENOENT);
	assert_int_equal(ivsock_listener_find(&t->rg, 2, &A4, 80), -ENOENT); /* other VM */
	assert_int_equal(ivsock_listener_find(&t->rg, 1, &A6, 80), -ENOENT);
	assert_int_equal(ivsock_listener_remove(&t->rg, (uint32_t)i, g + 1), -ESTALE);
	assert_int_equal(ivsock_listener_remove(&t->rg, (uint32_t)i, g), 0);
	assert_int_equal(ivsock_listener_find(&t->rg, 1, &A4, 80), -ENOENT);
	assert_int_equal(ivsock_listener_remove(&t->rg, (uint32_t)i, g), -ESTALE);
	assert_int_equal(ivsock_listener_remove(&t->rg, 1000, g), -EINVAL);
}

static void test_wildcards(void **state)
{
	struct test_region *t = *state;
	uint32_t g;
	int w4, w6, w6only;

	w4 = ivsock_listener_add(&t->rg, 0, 1, &ANY4, 22, 0, &g);
	assert_true(w4 >= 0);
	assert_int_equal(ivsock_listener_find(&t->rg, 0, &A4, 22), w4);
	assert_int_equal(ivsock_listener_find(&t->rg, 0, &B4, 22), w4);
	assert_int_equal(ivsock_listener_find(&t->rg, 0, &A6, 22), -ENOENT);
	/* an IPv6 wildcard takes IPv4 too ... */
	w6 = ivsock_listener_add(&t->rg, 0, 1, &ANY6, 443, 0, &g);
	assert_int_equal(ivsock_listener_find(&t->rg, 0, &A6, 443), w6);
	assert_int_equal(ivsock_listener_find(&t->rg, 0, &A4, 443), w6);
	/* ... unless V6ONLY */
	w6only = ivsock_listener_add(&t->rg, 0, 1, &ANY6, 444, IVSOCK_LISTENER_V6ONLY, &g);
	assert_int_equal(ivsock_listener_find(&t->rg, 0, &A6, 444), w6only);
	assert_int_equal(ivsock_listener_find(&t->rg, 0, &A4, 444), -ENOENT);
}

static void test_invalid_and_full(void **state)
{
	struct test_region *t = *state;
	struct ivsock_addr bad = { .family = 5 };
	uint32_t g, i;

	assert_int_equal(ivsock_listener_add(&t->rg, 0, 1, &bad, 1, 0, &g), -EINVAL);
	assert_int_equal(ivsock_listener_add(&t->rg, 4, 1, &A4, 1, 0, &g), -EINVAL);
	for (i = 0; i < t->rg.listener_cap; i++)
		assert_int_equal(ivsock_listener_add(&t->rg, 0, 1, &A4, (uint16_t)(1000 + i), 0, &g),
				 (int)i);
	assert_int_equal(ivsock_listener_add(&t->rg, 0, 1, &A4, 1, 0, &g), -ENOSPC);
}

static void test_release_owner(void **state)
{
	struct test_region *t = *state;
	uint32_t g;

	ivsock_listener_add(&t->rg, 0, 1, &A4, 1, 0, &g);
	ivsock_listener_add(&t->rg, 0, 1, &A4, 2, 0, &g);
	ivsock_listener_add(&t->rg, 0, 2, &A4, 3, 0, &g);
	ivsock_listener_add(&t->rg, 1, 1, &A4, 4, 0, &g);
	assert_int_equal(ivsock_listener_release_owner(&t->rg, 0, 1), 2);
	assert_int_equal(ivsock_listener_release_owner(&t->rg, 0, 1), 0);
	assert_int_equal(ivsock_listener_find(&t->rg, 0, &A4, 1), -ENOENT);
	assert_true(ivsock_listener_find(&t->rg, 0, &A4, 3) >= 0);
	assert_true(ivsock_listener_find(&t->rg, 1, &A4, 4) >= 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_exact),
		T(test_wildcards),
		T(test_invalid_and_full),
		T(test_release_owner),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
