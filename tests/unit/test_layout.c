// SPDX-License-Identifier: MIT
/*
 * Unit tests of region formatting and attaching (protocol/src/layout.c):
 * geometry, and refusal of foreign, mismatched or corrupted superblocks with
 * the documented -errno and message.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "testutil.h"

#define SIZE (4U << 20)

static int setup(void **state)
{
	struct test_region *t = calloc(1, sizeof(*t));
	struct ivsock_region_params p;

	test_params_small(&p);
	assert_int_equal(test_region_map(t, SIZE, &p), 0);
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	test_region_unmap(*state);
	free(*state);
	return 0;
}

static void test_format_attach(void **state)
{
	struct test_region *t = *state;
	struct ivsock_region a;
	const struct ivsock_superblock *sb = t->rg.sb;

	assert_int_equal(ivsock_region_attach(&a, t->base, t->size), 0);
	assert_int_equal(a.vm_cap, 4);
	assert_int_equal(a.listener_cap, 16);
	assert_int_equal(a.offer_cap, 64);
	assert_int_equal(a.channel_cap, 16);
	assert_int_equal(a.nclasses, 1);
	assert_int_equal(a.default_class, 0);
	assert_int_equal(a.class[0].ring_size, 4096);
	assert_int_equal(a.class[0].block_size, 2 * (4096 + 4096));
	assert_int_equal(a.class[0].blocks_per_vm, t->rg.class[0].blocks_per_vm);
	assert_true(a.class[0].blocks_per_vm >= 1);
	assert_int_equal(a.nblocks, a.vm_cap * a.class[0].blocks_per_vm);
	assert_true(a.format_id == t->rg.format_id);
	assert_ptr_equal(a.channels, t->rg.channels);
	assert_ptr_equal(a.pool, t->rg.pool);
	assert_true(sb->magic == IVSOCK_MAGIC);
	assert_int_equal(sb->version, IVSOCK_LAYOUT_VERSION);
	assert_int_equal(ivsock_load_relaxed(&sb->daemon_state), IVSOCK_DAEMON_UP);
	/* every table is 4 KiB aligned, in order, and inside the region */
	assert_true(sb->vm_off % 4096 == 0 && sb->vm_off >= sizeof(*sb));
	assert_true(sb->listener_off > sb->vm_off && sb->offer_off > sb->listener_off);
	assert_true(sb->channel_off > sb->offer_off && sb->mailbox_off > sb->channel_off);
	assert_true(sb->blockslot_off > sb->mailbox_off && sb->pool_off > sb->blockslot_off);
	assert_true(sb->pool_off + sb->pool_size <= t->size);
	assert_int_equal(sb->pool_size, (uint64_t)a.nblocks * a.class[0].block_size);
	/* the last block ends inside the region; one past it is refused */
	assert_non_null(ivsock_region_block_mem(&a, a.nblocks - 1));
	assert_true(ivsock_region_block_off(&a, a.nblocks - 1) + a.class[0].block_size <=
		    sb->pool_off + sb->pool_size);
	assert_null(ivsock_region_block_mem(&a, a.nblocks));
	assert_null(ivsock_region_block_mem(&a, UINT32_MAX));
	assert_int_equal(ivsock_region_block_vm(&a, a.class[0].blocks_per_vm), 1);
	assert_int_equal(ivsock_region_block_vm(&a, a.nblocks), IVSOCK_VM_NONE);
}

static void test_defaults(void **state)
{
	struct ivsock_region_params p;
	struct test_region t;

	(void)state;
	ivsock_region_params_default(&p);
	assert_int_equal(p.vm_cap, 16);
	assert_int_equal(p.nclasses, 4);
	assert_int_equal(p.class_size[p.default_class], 128 * 1024);
	assert_int_equal(test_region_map(&t, 16U << 20, &p), 0);
	assert_true(t.rg.class[t.rg.default_class].blocks_per_vm >= 1);
	test_region_unmap(&t);
	/* NULL params mean the defaults */
	assert_int_equal(test_region_map(&t, 16U << 20, NULL), 0);
	assert_int_equal(ivsock_region_format(&t.rg, t.base, t.size, NULL), 0);
	assert_int_equal(t.rg.class[t.rg.default_class].ring_size, 128 * 1024);
	test_region_unmap(&t);
}

static void test_format_refuses(void **state)
{
	struct test_region *t = *state;
	struct ivsock_region_params p;
	struct ivsock_region rg;

	test_params_small(&p);
	assert_int_equal(ivsock_region_format(&rg, t->base, SIZE - 4096, &p), -EINVAL);
	assert_int_equal(ivsock_region_format(&rg, t->base, 32768, &p), -EINVAL);
	assert_int_equal(ivsock_region_format(&rg, NULL, SIZE, &p), -EINVAL);
	p.vm_cap = 0;
	assert_int_equal(ivsock_region_format(&rg, t->base, SIZE, &p), -EINVAL);
	p.vm_cap = 256;
	assert_int_equal(ivsock_region_format(&rg, t->base, SIZE, &p), -EINVAL);
	test_params_small(&p);
	p.class_size[0] = 1000;
	assert_int_equal(ivsock_region_format(&rg, t->base, SIZE, &p), -EINVAL);
	p.class_size[0] = 512; /* a block ring is at least 1 KiB */
	assert_int_equal(ivsock_region_format(&rg, t->base, SIZE, &p), -EINVAL);
	test_params_small(&p);
	p.daemon_peer_id = 65536;
	assert_int_equal(ivsock_region_format(&rg, t->base, SIZE, &p), -EINVAL);
	/* defaults do not fit in 1 MiB: 16 VMs x a block of 2 x 128 KiB */
	ivsock_region_params_default(&p);
	assert_int_equal(ivsock_region_format(&rg, t->base, 1U << 20, &p), -ENOSPC);
	/* the refused formats did not touch the region */
	assert_int_equal(ivsock_region_attach(&rg, t->base, SIZE), 0);
}

static void test_offer_cap_rounded(void **state)
{
	struct test_region *t = *state;
	struct ivsock_region_params p;
	struct ivsock_region rg;

	test_params_small(&p);
	p.offer_cap = 100;
	assert_int_equal(ivsock_region_format(&rg, t->base, SIZE, &p), 0);
	assert_int_equal(rg.offer_cap, 128);
	assert_int_equal(rg.sb->offer_cap, 128);
}

static void expect_attach(struct test_region *t, int err)
{
	struct ivsock_region rg;

	assert_int_equal(ivsock_region_attach(&rg, t->base, t->size), err);
}

static void test_bad_magic(void **state)
{
	struct test_region *t = *state;

	t->rg.sb->magic ^= 1;
	expect_attach(t, -EBADF);
	memset(t->base, 0, 4096);
	expect_attach(t, -EBADF);
}

static void test_bad_version(void **state)
{
	struct test_region *t = *state;

	t->rg.sb->version = IVSOCK_LAYOUT_VERSION + 1;
	expect_attach(t, -EPROTONOSUPPORT);
	t->rg.sb->version = IVSOCK_LAYOUT_VERSION;
	t->rg.sb->sb_size += 64;
	expect_attach(t, -EPROTONOSUPPORT);
}

static void test_bad_size(void **state)
{
	struct test_region *t = *state;
	struct ivsock_region rg;

	assert_int_equal(ivsock_region_attach(&rg, t->base, t->size / 2), -EMSGSIZE);
	assert_int_equal(ivsock_region_attach(&rg, t->base, 16), -EINVAL);
	t->rg.sb->region_size = t->size * 2;
	expect_attach(t, -EMSGSIZE);
}

/* Each corruption of the geometry alone must be refused with -EPROTO. */
static void test_bad_geometry(void **state)
{
	struct test_region *t = *state;
	struct ivsock_superblock *sb = t->rg.sb, save = *sb;
	int i;

	for (i = 0; i < 17; i++) {
		memcpy(sb, &save, offsetof(struct ivsock_superblock, daemon_heartbeat));
		switch (i) {
		case 0: sb->vm_cap = 0; break;
		case 1: sb->vm_cap = 300; break;
		case 2: sb->vm_cap = save.vm_cap + 1; break; /* offsets no longer match */
		case 3: sb->listener_cap = 1U << 21; break;
		case 4: sb->offer_cap = 63; break;
		case 5: sb->offer_cap = 0; break;
		case 6: sb->channel_cap = 0; break;
		case 7: sb->channel_cap = 1U << 25; break;
		case 8: sb->class[0].ring_size = 4095; break;
		case 9: sb->class[0].ring_size = 1U << 31; break;
		case 10: sb->vm_off += 64; break;
		case 11: sb->channel_off = t->size * 4; break;
		case 12: sb->pool_off -= 4096; break;
		case 13: sb->pool_size += save.class[0].block_size; break;
		case 14: sb->class[0].block_size = 64; break;
		case 15: sb->class[0].blocks_per_vm = save.class[0].blocks_per_vm * 100; break; /* does not fit */
		case 16: sb->channel_cap = save.channel_cap * 1000; break; /* tables overflow */
		}
		expect_attach(t, -EPROTO);
	}
	memcpy(sb, &save, offsetof(struct ivsock_superblock, daemon_heartbeat));
	expect_attach(t, 0);
}

static void test_strerror(void **state)
{
	(void)state;
	assert_string_equal(ivsock_region_strerror(0), "ok");
	assert_non_null(strstr(ivsock_region_strerror(-EBADF), "not an ivsock region"));
	assert_non_null(strstr(ivsock_region_strerror(-EPROTONOSUPPORT), "version"));
	assert_non_null(strstr(ivsock_region_strerror(-EMSGSIZE), "size"));
	assert_non_null(strstr(ivsock_region_strerror(-EPROTO), "geometry"));
	assert_non_null(strstr(ivsock_region_strerror(-ENOSPC), "do not fit"));
	assert_non_null(strstr(ivsock_region_strerror(-EINVAL), "invalid"));
	assert_string_equal(ivsock_region_strerror(-E2BIG), "unknown error");
}

/* A re-format gets a new format_id: attachers can tell. */
static void test_format_id(void **state)
{
	struct test_region *t = *state;
	struct ivsock_region_params p;
	uint64_t old = t->rg.format_id;

	test_params_small(&p);
	assert_int_equal(ivsock_region_format(&t->rg, t->base, t->size, &p), 0);
	assert_true(t->rg.format_id != old);
}

/*
 * Whatever the ring size, a region that has room for the tables and one
 * block per VM formats, and the pool ends inside it (the pool's alignment
 * padding must cost blocks, not the whole format).
 */
static void test_geometry_fits(void **state)
{
	struct test_region *t = *state;
	struct ivsock_region_params p;
	struct ivsock_region rg;
	uint32_t rs;

	test_params_small(&p);
	for (rs = 4096; rs <= (1U << 20); rs <<= 1) {
		int rc;

		p.class_size[0] = rs;
		rc = ivsock_region_format(&rg, t->base, SIZE, &p);
		if (rc == 0) {
			assert_true(rg.class[0].blocks_per_vm >= 1);
			assert_true(rg.sb->pool_off + rg.sb->pool_size <= SIZE);
			assert_int_equal(ivsock_region_attach(&rg, t->base, SIZE), 0);
			continue;
		}
		assert_int_equal(rc, -ENOSPC);
		/* refused only when one block per VM really does not fit */
		assert_true((uint64_t)p.vm_cap * ivsock_block_size(rs) > SIZE - 200 * 1024);
	}
	/* the sizes near the limit: 1 MiB region, 4 KiB rings */
	test_params_small(&p);
	assert_int_equal(ivsock_region_format(&rg, t->base, 1U << 20, &p), 0);
	assert_true(rg.sb->pool_off + rg.sb->pool_size <= (1U << 20));
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_format_attach),
		T(test_defaults),
		T(test_format_refuses),
		T(test_offer_cap_rounded),
		T(test_bad_magic),
		T(test_bad_version),
		T(test_bad_size),
		T(test_bad_geometry),
		T(test_strerror),
		T(test_format_id),
		T(test_geometry_fits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
