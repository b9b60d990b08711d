// SPDX-License-Identifier: MIT
/*
 * Unit tests of the per-VM block pool (ivsock_block_alloc/free in
 * protocol/src/layout.c), one class: each VM's partition is its quota, and
 * filling one partition leaves the others untouched.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "ivsock/ring.h"
#include "ivsock/channel.h"
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

static void test_quota(void **state)
{
	struct test_region *t = *state;
	struct ivsock_region *rg = &t->rg;
	uint32_t per = rg->class[0].blocks_per_vm, i, idx[512], gen[512], x, g;

	assert_true(per >= 2 && per <= 512);
	assert_int_equal(rg->nclasses, 1);
	for (i = 0; i < per; i++) {
		assert_int_equal(ivsock_block_alloc(rg, 1, 0, 7, &idx[i], &gen[i]), 0);
		/* from VM 1's partition, each block once */
		assert_int_equal(ivsock_region_block_vm(rg, idx[i]), 1);
		if (i)
			assert_true(idx[i] != idx[i - 1]);
		assert_int_equal(ivsock_block_pool_used(rg, 1), i + 1);
	}
	assert_int_equal(ivsock_block_alloc(rg, 1, 0, 7, &x, &g), -ENOSPC);
	/* the other partitions are unaffected */
	assert_int_equal(ivsock_block_pool_used(rg, 0), 0);
	assert_int_equal(ivsock_block_pool_used(rg, 2), 0);
	assert_int_equal(ivsock_block_alloc(rg, 0, 0, 1, &x, &g), 0);
	assert_int_equal(ivsock_region_block_vm(rg, x), 0);
	assert_int_equal(ivsock_block_alloc(rg, 3, 0, 1, &x, &g), 0);
	assert_int_equal(ivsock_region_block_vm(rg, x), 3);
	assert_int_equal(ivsock_block_pool_used(rg, 1), per);
	/* free one: exactly one more fits, with a new generation */
	assert_int_equal(ivsock_block_free(rg, idx[1], gen[1]), 0);
	assert_int_equal(ivsock_block_pool_used(rg, 1), per - 1);
	assert_int_equal(ivsock_block_alloc(rg, 1, 0, 7, &x, &g), 0);
	assert_int_equal(x, idx[1]);
	assert_true(g != gen[1]);
	assert_int_equal(ivsock_block_alloc(rg, 1, 0, 7, &x, &g), -ENOSPC);
	/* a stale reference cannot free the new owner's ring */
	assert_int_equal(ivsock_block_free(rg, idx[1], gen[1]), -ESTALE);
	assert_int_equal(ivsock_block_pool_used(rg, 1), per);
	for (i = 0; i < per; i++) {
		uint32_t gg = ivsock_slot_get(&rg->blockslots[idx[i]]).gen;

		assert_int_equal(ivsock_block_free(rg, idx[i], gg), 0);
	}
	assert_int_equal(ivsock_block_pool_used(rg, 1), 0);
}

static void test_bad_args(void **state)
{
	struct test_region *t = *state;
	uint32_t x, g;

	assert_int_equal(ivsock_block_alloc(&t->rg, 4, 0, 0, &x, &g), -EINVAL);
	assert_int_equal(ivsock_block_alloc(&t->rg, 255, 0, 0, &x, &g), -EINVAL);
	assert_int_equal(ivsock_block_alloc(&t->rg, 0, 1, 0, &x, &g), -EINVAL); /* no class 1 */
	assert_int_equal(ivsock_block_free(&t->rg, 4 * t->rg.class[0].blocks_per_vm, 1), -EINVAL);
	assert_int_equal(ivsock_block_free(&t->rg, 0, 1), -ESTALE); /* never allocated */
	assert_int_equal(ivsock_block_pool_used(&t->rg, 9), 0);
}

/* A block comes out formatted (both rings, both ctl pages), whatever its
 * memory held before. */
static void test_alloc_formats(void **state)
{
	struct test_region *t = *state;
	struct ivsock_chan_view v0, v1;
	uint32_t x, g, rs = t->rg.class[0].ring_size;
	void *mem;
	int side;

	memset(t->rg.pool, 0x5a, (size_t)t->rg.class[0].block_size * t->rg.class[0].blocks_per_vm);
	assert_int_equal(ivsock_block_alloc(&t->rg, 0, 0, 0, &x, &g), 0);
	mem = ivsock_region_block_mem(&t->rg, x);
	for (side = 0; side < 2; side++) {
		const uint8_t *ctl = (const uint8_t *)ivsock_block_ctl(mem, rs, side);

		for (size_t i = 0; i < IVSOCK_CTL_SIZE; i++)
			assert_int_equal(ctl[i], 0);
	}
	assert_int_equal(ivsock_chan_view_block(&v0, mem, rs, 0, 0, 0), 0);
	assert_int_equal(ivsock_chan_view_block(&v1, mem, rs, 1, 0, 0), 0);
	assert_int_equal(ivsock_ring_readable(&v1.rx), 0);
	assert_int_equal(ivsock_ring_readable(&v0.rx), 0);
	assert_int_equal(ivsock_ring_writable(&v0.tx), rs);
	assert_int_equal(ivsock_ring_writable(&v1.tx), rs);
	assert_int_equal(ivsock_ring_peer_flags(&v1.rx), 0);
	assert_int_equal(ivsock_ring_write(&v0.tx, "abc", 3, false), 3);
	assert_int_equal(ivsock_ring_readable(&v1.rx), 3);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_quota),
		T(test_bad_args),
		T(test_alloc_formats),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
