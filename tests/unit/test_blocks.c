// SPDX-License-Identifier: MIT
/*
 * Unit tests of layout v4's block pool (protocol/src/layout.c, channel.c):
 * the class table (defaults, one class, a share that gives no block, an
 * attacher refusing a tampered table), allocation per class with a quota
 * per VM and class, page alignment of every block, half and of the tables
 * part, blocks never overlapping, and views of a block mapped elsewhere
 * (ivsock_chan_view_block): a copy, a second mapping of just the block, and
 * a window-like mapping that is writable only over the end's own half.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "ivsock/channel.h"
#include "testutil.h"

static const struct ivsock_end_id C0 = { .vm = 0, .client = 1, .peer_id = 10, .vector = 1,
					 .uid = 1000 };
static const struct ivsock_end_id A1 = { .vm = 1, .client = 5, .peer_id = 11, .vector = 3,
					 .uid = 33 };

static struct ivsock_tuple tup(uint16_t sport)
{
	struct ivsock_tuple t = {
		.src = { .family = IVSOCK_AF_INET, .bytes = { 127, 0, 0, 1 } },
		.dst = { .family = IVSOCK_AF_INET, .bytes = { 10, 0, 0, 2 } },
		.sport = sport, .dport = 80,
	};
	return t;
}

/* Four classes, small tables: a region of a few MiB has blocks of each. */
static void params_classes(struct ivsock_region_params *p)
{
	test_params_small(p);
	p->nclasses = 4;
	p->class_size[0] = 4096;
	p->class_size[1] = 8192;
	p->class_size[2] = 16384;
	p->class_size[3] = 65536;
	p->class_share[0] = 10;
	p->class_share[1] = 20;
	p->class_share[2] = 50;
	p->class_share[3] = 20;
	p->default_class = 2;
}

/* ---------------------------- class table ---------------------------- */

static void test_defaults(void **state)
{
	struct ivsock_region_params p;
	struct test_region t;
	const struct ivsock_region *rg = &t.rg;
	static const uint32_t sizes[4] = { 1024, 32768, 131072, 1048576 };
	static const uint32_t shares[4] = { 10, 20, 50, 20 };
	uint64_t avail;
	uint32_t k;

	(void)state;
	ivsock_region_params_default(&p);
	assert_int_equal(p.nclasses, 4);
	assert_int_equal(p.default_class, 2);
	for (k = 0; k < 4; k++) {
		assert_int_equal(p.class_size[k], sizes[k]);
		assert_int_equal(p.class_share[k], shares[k]);
	}
	assert_int_equal(test_region_map(&t, 256U << 20, &p), 0);
	assert_int_equal(rg->nclasses, 4);
	assert_int_equal(rg->default_class, 2);
	avail = t.size - rg->sb->blockslot_off;
	for (k = 0; k < 4; k++) {
		const struct ivsock_class_desc *c = &rg->class[k];
		uint64_t bytes = (uint64_t)c->blocks_per_vm * rg->vm_cap * c->block_size;

		assert_int_equal(c->ring_size, sizes[k]);
		assert_int_equal(c->block_size, sizes[k] == 1024 ? 8192 : 2 * (4096 + (uint64_t)sizes[k]));
		uint64_t budget = avail / 100 * shares[k];
		uint64_t per_vm_row = (uint64_t)rg->vm_cap * (c->block_size + 8);

		/* every class gets blocks in 256 MiB, no more than its share,
		 * and its share leaves less than one block per VM unused (two
		 * for the last class, which pays for the pool's alignment) */
		assert_true(c->blocks_per_vm >= 1);
		assert_true(bytes <= budget);
		assert_true((uint64_t)(c->blocks_per_vm + (k == 3 ? 2 : 1)) * per_vm_row > budget);
		assert_int_equal(rg->sb->class[k].blocks_per_vm, c->blocks_per_vm);
	}
	/* the classes are laid out in order, each VM's partition in turn */
	assert_int_equal(rg->class[0].first_block, 0);
	assert_int_equal(rg->class[0].pool_off, rg->sb->pool_off);
	for (k = 1; k < 4; k++) {
		assert_int_equal(rg->class[k].first_block,
				 rg->class[k - 1].first_block +
				 rg->vm_cap * rg->class[k - 1].blocks_per_vm);
		assert_int_equal(rg->class[k].pool_off,
				 rg->class[k - 1].pool_off + (uint64_t)rg->vm_cap *
				 rg->class[k - 1].blocks_per_vm * rg->class[k - 1].block_size);
	}
	assert_int_equal(rg->class[3].pool_off + (uint64_t)rg->vm_cap *
			 rg->class[3].blocks_per_vm * rg->class[3].block_size,
			 rg->sb->pool_off + rg->sb->pool_size);
	test_region_unmap(&t);

	/* in 16 MiB the 1 MiB class gets no block: it exists with quota 0 */
	assert_int_equal(test_region_map(&t, 16U << 20, &p), 0);
	assert_int_equal(rg->nclasses, 4);
	assert_int_equal(rg->class[3].blocks_per_vm, 0);
	assert_true(rg->class[rg->default_class].blocks_per_vm >= 1);
	test_region_unmap(&t);
}

static void test_single_class(void **state)
{
	struct ivsock_region_params p;
	struct test_region t;
	const struct ivsock_region *rg = &t.rg;
	struct ivsock_region a;
	uint64_t left;

	(void)state;
	ivsock_region_params_single(&p, 65536);
	assert_int_equal(p.nclasses, 1);
	assert_int_equal(p.default_class, 0);
	assert_int_equal(p.class_size[0], 65536);
	assert_int_equal(p.class_share[0], 100);
	assert_int_equal(p.class_size[1], 0);
	assert_int_equal(p.vm_cap, 16); /* the other defaults stay */
	assert_int_equal(test_region_map(&t, 16U << 20, &p), 0);
	assert_int_equal(rg->nclasses, 1);
	/* the one class gets the whole pool: what is left after the last
	 * block holds less than one block per VM (plus slot words, padding) */
	left = t.size - (rg->sb->pool_off + rg->sb->pool_size);
	assert_true(left < 2 * (uint64_t)rg->vm_cap * (rg->class[0].block_size + 8));
	/* the unused descriptors are zero, also in the superblock */
	assert_int_equal(rg->sb->class[1].ring_size, 0);
	assert_int_equal(rg->sb->class[3].pool_off, 0);
	assert_int_equal(ivsock_region_attach(&a, t.base, t.size), 0);
	assert_int_equal(a.nclasses, 1);
	assert_int_equal(a.class[0].blocks_per_vm, rg->class[0].blocks_per_vm);
	test_region_unmap(&t);
}

static void test_zero_share(void **state)
{
	struct ivsock_region_params p;
	struct test_region t;
	struct ivsock_region *rg = &t.rg;
	uint32_t i, x, g;

	(void)state;
	params_classes(&p);
	p.class_share[1] = 0;
	p.class_share[3] = 1; /* 1 % of 4 MiB: less than a 128 KiB block per VM */
	assert_int_equal(test_region_map(&t, 4U << 20, &p), 0);
	assert_int_equal(rg->nclasses, 4);
	assert_int_equal(rg->class[1].blocks_per_vm, 0);
	assert_int_equal(rg->class[3].blocks_per_vm, 0);
	assert_true(rg->class[0].blocks_per_vm > 0 && rg->class[2].blocks_per_vm > 0);
	/* a class with quota 0 allocates nothing and owns no index */
	assert_int_equal(ivsock_block_alloc(rg, 0, 1, 1, &x, &g), -ENOSPC);
	assert_int_equal(ivsock_block_alloc(rg, 3, 3, 1, &x, &g), -ENOSPC);
	assert_int_equal(ivsock_block_class_used(rg, 0, 1), 0);
	for (i = 0; i < rg->nblocks; i++) {
		int k = ivsock_region_block_class(rg, i);

		assert_true(k == 0 || k == 2);
	}
	/* ... and a connection asked for in that class is refused cleanly */
	{
		struct ivsock_tuple tp = tup(1);

		assert_int_equal(ivsock_chan_open(rg, &C0, &tp, IVSOCK_VM_NONE, 1, &x, &g), -ENOSPC);
		assert_int_equal(ivsock_block_pool_used(rg, 0), 0);
	}
	test_region_unmap(&t);
	/* a default class with no block cannot carry a connection: refused */
	params_classes(&p);
	p.class_share[2] = 0;
	assert_int_equal(test_region_map(&t, 4U << 20, &p), -ENOSPC);
}

static void test_bad_params(void **state)
{
	struct ivsock_region_params p;
	struct test_region t;

	(void)state;
	assert_int_equal(test_region_map(&t, 1U << 20, NULL), 0);
	params_classes(&p);
	p.nclasses = 0;
	assert_int_equal(ivsock_region_format(&t.rg, t.base, t.size, &p), -EINVAL);
	params_classes(&p);
	p.nclasses = IVSOCK_CLASS_MAX + 1;
	assert_int_equal(ivsock_region_format(&t.rg, t.base, t.size, &p), -EINVAL);
	params_classes(&p);
	p.default_class = 4;
	assert_int_equal(ivsock_region_format(&t.rg, t.base, t.size, &p), -EINVAL);
	params_classes(&p);
	p.class_size[2] = p.class_size[1]; /* one class per size, increasing */
	assert_int_equal(ivsock_region_format(&t.rg, t.base, t.size, &p), -EINVAL);
	params_classes(&p);
	p.class_size[1] = 12288; /* not a power of two */
	assert_int_equal(ivsock_region_format(&t.rg, t.base, t.size, &p), -EINVAL);
	params_classes(&p);
	p.class_share[0] = 11; /* 101 % */
	assert_int_equal(ivsock_region_format(&t.rg, t.base, t.size, &p), -EINVAL);
	test_region_unmap(&t);
}

/* Each tampering of the class table alone is refused with -EPROTO. */
static void test_attach_refuses_tampered_classes(void **state)
{
	struct ivsock_region_params p;
	struct test_region t;
	struct ivsock_region a;
	struct ivsock_superblock *sb, save;
	int i;

	(void)state;
	params_classes(&p);
	assert_int_equal(test_region_map(&t, 4U << 20, &p), 0);
	sb = t.rg.sb;
	save = *sb;
	for (i = 0; i < 22; i++) {
		memcpy(sb, &save, offsetof(struct ivsock_superblock, daemon_heartbeat));
		switch (i) {
		case 0: sb->nclasses = 0; break;
		case 1: sb->nclasses = IVSOCK_CLASS_MAX + 1; break;
		case 2: sb->nclasses = 3; break;            /* class 3 left in the table */
		case 3: sb->default_class = 100; break;
		case 4: sb->default_class = save.nclasses; break;
		case 5: sb->class[1].ring_size = 12288; break;
		case 6: sb->class[1].ring_size = 2048; break;
		case 7: sb->class[1].ring_size = save.class[2].ring_size; break; /* order */
		case 8: sb->class[0].block_size += 4096; break;
		case 9: sb->class[2].first_block++; break;
		case 10: sb->class[2].pool_off += IVSOCK_PAGE; break;
		case 11: sb->class[2].pool_off += 64; break;   /* not page aligned */
		case 12: sb->class[1].blocks_per_vm++; break;  /* the rest moves */
		case 13: sb->class[3].blocks_per_vm = 1U << 30; break;
		case 14: sb->class[0].pad = 1; break;
		case 15: sb->blockslot_off += 8; break;
		case 16: sb->pool_off += IVSOCK_PAGE; break;
		case 17: sb->pool_size -= save.class[3].block_size; break;
		case 18: /* the default class's quota given to another class */
			sb->class[2].blocks_per_vm = 0;
			break;
		case 19: sb->class[1].ring_size = 0; break;
		case 20: sb->class[3].ring_size = 1U << 31; break;
		case 21: { /* swapped classes, consistent offsets otherwise */
			struct ivsock_class_desc c = sb->class[0];

			sb->class[0] = sb->class[1];
			sb->class[1] = c;
			break;
		}
		}
		assert_int_equal(ivsock_region_attach(&a, t.base, t.size), -EPROTO);
	}
	memcpy(sb, &save, offsetof(struct ivsock_superblock, daemon_heartbeat));
	assert_int_equal(ivsock_region_attach(&a, t.base, t.size), 0);
	test_region_unmap(&t);
	/* an unused descriptor must stay zero */
	ivsock_region_params_single(&p, 4096);
	p.vm_cap = 4;
	assert_int_equal(test_region_map(&t, 1U << 20, &p), 0);
	t.rg.sb->class[2].ring_size = 4096;
	assert_int_equal(ivsock_region_attach(&a, t.base, t.size), -EPROTO);
	t.rg.sb->class[2].ring_size = 0;
	t.rg.sb->class[3].pool_off = 4096;
	assert_int_equal(ivsock_region_attach(&a, t.base, t.size), -EPROTO);
	t.rg.sb->class[3].pool_off = 0;
	assert_int_equal(ivsock_region_attach(&a, t.base, t.size), 0);
	test_region_unmap(&t);
}

/* ----------------------------- the pool ----------------------------- */

static void test_alloc_per_class_and_vm(void **state)
{
	struct ivsock_region_params p;
	struct test_region t;
	struct ivsock_region *rg = &t.rg;
	uint32_t k, i, x, g, idx[256], gen[256], total = 0;

	(void)state;
	params_classes(&p);
	assert_int_equal(test_region_map(&t, 8U << 20, &p), 0);
	for (k = 0; k < rg->nclasses; k++) {
		uint32_t per = rg->class[k].blocks_per_vm;

		assert_true(per >= 1 && per <= 256);
		for (i = 0; i < per; i++) {
			assert_int_equal(ivsock_block_alloc(rg, 1, k, 7, &idx[i], &gen[i]), 0);
			assert_int_equal(ivsock_region_block_class(rg, idx[i]), (int)k);
			assert_int_equal(ivsock_region_block_vm(rg, idx[i]), 1);
			assert_int_equal(ivsock_block_class_used(rg, 1, k), i + 1);
		}
		total += per;
		/* VM 1's quota of class k is full ... */
		assert_int_equal(ivsock_block_alloc(rg, 1, k, 7, &x, &g), -ENOSPC);
		assert_int_equal(ivsock_block_pool_used(rg, 1), total);
		/* ... not VM 2's, nor VM 1's of the next class */
		assert_int_equal(ivsock_block_alloc(rg, 2, k, 7, &x, &g), 0);
		assert_int_equal(ivsock_region_block_vm(rg, x), 2);
		assert_int_equal(ivsock_region_block_class(rg, x), (int)k);
		assert_int_equal(ivsock_block_free(rg, x, g), 0);
		assert_int_equal(ivsock_block_class_used(rg, 2, k), 0);
		/* free one: exactly one more fits, same index, new generation */
		assert_int_equal(ivsock_block_free(rg, idx[0], gen[0]), 0);
		assert_int_equal(ivsock_block_alloc(rg, 1, k, 7, &x, &g), 0);
		assert_int_equal(x, idx[0]);
		assert_true(g != gen[0]);
		assert_int_equal(ivsock_block_free(rg, idx[0], gen[0]), -ESTALE);
		assert_int_equal(ivsock_block_alloc(rg, 1, k, 7, &x, &g), -ENOSPC);
	}
	/* a release of the owner frees every class (no channel names them) */
	assert_int_equal(ivsock_block_release_unreferenced(rg, 1, 8), 0);
	assert_int_equal(ivsock_block_release_unreferenced(rg, 1, 7), (int)total);
	assert_int_equal(ivsock_block_pool_used(rg, 1), 0);
	/* bad arguments */
	assert_int_equal(ivsock_block_alloc(rg, 1, 4, 7, &x, &g), -EINVAL);
	assert_int_equal(ivsock_block_alloc(rg, 4, 0, 7, &x, &g), -EINVAL);
	assert_int_equal(ivsock_block_free(rg, rg->nblocks, 1), -EINVAL);
	assert_int_equal(ivsock_block_class_used(rg, 1, 9), 0);
	assert_int_equal(ivsock_region_block_class(rg, rg->nblocks), -1);
	assert_int_equal(ivsock_region_block_vm(rg, UINT32_MAX), IVSOCK_VM_NONE);
	assert_int_equal(ivsock_region_block_off(rg, rg->nblocks), 0);
	test_region_unmap(&t);
}

/* Every block, both halves and both data areas page aligned; the tables
 * part ends on a page; blocks (and so their halves) never overlap. */
static void test_alignment_and_overlap(void **state)
{
	struct ivsock_region_params p;
	struct test_region t;
	struct ivsock_region *rg = &t.rg;
	uint64_t prev_end;
	uint32_t i;
	int pass;

	(void)state;
	for (pass = 0; pass < 3; pass++) {
		if (pass == 0)
			params_classes(&p);
		else if (pass == 1)
			ivsock_region_params_default(&p);
		else
			ivsock_region_params_single(&p, 8192);
		if (pass == 2)
			p.offer_cap = 3; /* odd table sizes */
		assert_int_equal(test_region_map(&t, pass == 1 ? 64U << 20 : 8U << 20, &p), 0);
		assert_int_equal(rg->tables_size, rg->sb->pool_off);
		assert_int_equal(rg->tables_size % IVSOCK_PAGE, 0);
		assert_true(rg->sb->blockslot_off + 8ULL * rg->nblocks <= rg->tables_size);
		assert_ptr_equal(rg->blockslots, t.base + rg->sb->blockslot_off);
		prev_end = rg->tables_size;
		for (i = 0; i < rg->nblocks; i++) {
			int k = ivsock_region_block_class(rg, i);
			uint32_t rs;
			uint64_t off = ivsock_region_block_off(rg, i), h0, h1, len;

			assert_true(k >= 0);
			rs = rg->class[k].ring_size;
			len = ivsock_block_half_len(rs);
			h0 = off + ivsock_block_half_off(rs, 0);
			h1 = off + ivsock_block_half_off(rs, 1);
			assert_int_equal(off % IVSOCK_PAGE, 0);
			assert_int_equal(h0 % IVSOCK_PAGE, 0);
			assert_int_equal(h1 % IVSOCK_PAGE, 0);
			assert_int_equal(len % IVSOCK_PAGE, 0);
			/* the halves tile the block exactly */
			assert_int_equal(h0, off);
			assert_int_equal(h1, off + len);
			assert_int_equal(2 * len, rg->class[k].block_size);
			/* ctl page then data, in each half */
			assert_ptr_equal((uint8_t *)ivsock_block_ctl(t.base + off, rs, 1), t.base + h1);
			assert_ptr_equal(ivsock_block_data(t.base + off, rs, 0), t.base + h0 + IVSOCK_CTL_SIZE);
			assert_ptr_equal(ivsock_block_data(t.base + off, rs, 1), t.base + h1 + IVSOCK_CTL_SIZE);
			/* blocks in index order, each after the previous one
			 * (no overlap with any other block), inside the pool */
			assert_true(off >= prev_end);
			prev_end = off + rg->class[k].block_size;
			assert_true(prev_end <= rg->sb->pool_off + rg->sb->pool_size);
			assert_ptr_equal(ivsock_region_block_mem(rg, i), t.base + off);
		}
		assert_true(rg->sb->pool_off + rg->sb->pool_size <= t.size);
		test_region_unmap(&t);
	}
}

/* ------------------------- views of a block ------------------------- */

struct conn {
	uint32_t idx, gen;
	struct ivsock_chan_view c, a;
	uint64_t off, bsize;
	uint32_t rs;
};

static void connect_pair(struct test_region *t, struct conn *x, uint32_t cls)
{
	struct ivsock_tuple tp = tup(1234);
	int k;

	assert_int_equal(ivsock_chan_open(&t->rg, &C0, &tp, 1, cls, &x->idx, &x->gen), 0);
	assert_int_equal(ivsock_chan_accept(&t->rg, x->idx, x->gen, 0, &A1, &x->a), 0);
	assert_int_equal(ivsock_chan_view_connector(&t->rg, x->idx, x->gen, &x->c), 0);
	k = ivsock_region_block_class(&t->rg, x->c.block_idx);
	assert_int_equal(k, (int)cls);
	x->rs = t->rg.class[k].ring_size;
	x->off = ivsock_region_block_off(&t->rg, x->c.block_idx);
	x->bsize = t->rg.class[k].block_size;
	assert_int_equal(x->c.ring_size, x->rs);
	assert_int_equal(x->a.block_idx, x->c.block_idx);
	assert_int_equal(x->a.block_gen, x->c.block_gen);
	/* the doorbell words and holders went to the ctl pages, uid to the table */
	assert_int_equal(x->c.my_ctl->peer_id, C0.peer_id);
	assert_int_equal(x->a.my_ctl->vector, A1.vector);
	assert_int_equal(ivsock_load_relaxed(&x->c.my_ctl->holders), 1);
	assert_int_equal(ivsock_load_relaxed(&x->a.my_ctl->holders), 1);
	assert_int_equal(t->rg.channels[x->idx].end[0].uid, C0.uid);
	assert_int_equal(t->rg.channels[x->idx].end[1].uid, A1.uid);
	assert_int_equal(x->a.peer.uid, C0.uid);
}

static void fill(uint8_t *b, size_t n, uint64_t seed)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(splitmix64(&seed) >> 56);
}

/* Stream n bytes through tx (written by `w`) into rx (read by `r`), in
 * odd-sized chunks that wrap the ring several times; byte-exact. */
static void stream(struct ivsock_ring *w, struct ivsock_ring *r, size_t n, uint64_t seed)
{
	uint8_t *src = malloc(n), *dst = malloc(n);
	size_t put = 0, got = 0;
	int idle = 0;

	assert_non_null(src);
	assert_non_null(dst);
	fill(src, n, seed);
	while (got < n) {
		size_t before = put + got;

		if (idle++ > 1000)
			fail_msg("stream stuck at %zu/%zu bytes", got, n);
		if (put < n) {
			size_t want = n - put < 3001 ? n - put : 3001;
			ssize_t k = ivsock_ring_write(w, src + put, want, false);

			assert_true(k >= 0);
			put += (size_t)k;
		}
		{
			ssize_t k = ivsock_ring_read(r, dst + got, n - got < 1777 ? n - got : 1777);

			assert_true(k > 0 || k == -EAGAIN);
			if (k > 0)
				got += (size_t)k;
		}
		if (put + got != before)
			idle = 0;
	}
	assert_memory_equal(src, dst, n);
	free(src);
	free(dst);
}

/* A block copied elsewhere (plain memory): a view of it reads what was
 * written through the region, and the copy is independent afterwards. */
static void test_view_block_copy(void **state)
{
	struct ivsock_region_params p;
	struct test_region t;
	struct conn x;
	struct ivsock_chan_view v;
	uint8_t *copy, buf[64];

	(void)state;
	params_classes(&p);
	assert_int_equal(test_region_map(&t, 8U << 20, &p), 0);
	connect_pair(&t, &x, 0);
	assert_int_equal(ivsock_ring_write(&x.c.tx, "to the acceptor", 15, false), 15);
	assert_int_equal(ivsock_ring_write(&x.a.tx, "back", 4, false), 4);
	copy = aligned_alloc(IVSOCK_PAGE, x.bsize);
	assert_non_null(copy);
	memcpy(copy, t.base + x.off, x.bsize);
	assert_int_equal(ivsock_chan_view_block(&v, copy, x.rs, IVSOCK_SIDE_ACCEPTOR, x.idx, x.gen), 0);
	assert_int_equal(v.idx, x.idx);
	assert_int_equal(v.gen, x.gen);
	assert_int_equal(v.side, IVSOCK_SIDE_ACCEPTOR);
	assert_int_equal(v.block_gen, 0);
	assert_int_equal(v.ring_vm, IVSOCK_VM_NONE);
	assert_ptr_equal(v.my_ctl, copy + ivsock_block_half_off(x.rs, 1));
	assert_ptr_equal(v.peer_ctl, copy);
	assert_int_equal(ivsock_ring_read(&v.rx, buf, sizeof(buf)), 15);
	assert_memory_equal(buf, "to the acceptor", 15);
	/* what the acceptor wrote is still unread by the connector */
	assert_int_equal(ivsock_ring_unconsumed(&v.tx), 4);
	/* bad arguments */
	assert_int_equal(ivsock_chan_view_block(&v, NULL, x.rs, 0, 0, 0), -EINVAL);
	assert_int_equal(ivsock_chan_view_block(&v, copy, 512, 0, 0, 0), -EINVAL);
	assert_int_equal(ivsock_chan_view_block(&v, copy, 12288, 0, 0, 0), -EINVAL);
	assert_int_equal(ivsock_chan_view_block(&v, copy, x.rs, 2, 0, 0), -EINVAL);
	/* corrupt indices in the copy are refused like in the region */
	ivsock_store_relaxed(&((struct ivsock_end_ctl *)copy)->prod.tail, 3 * x.rs);
	assert_int_equal(ivsock_chan_view_block(&v, copy, x.rs, IVSOCK_SIDE_ACCEPTOR, 0, 0), -EPROTO);
	free(copy);
	/* the region itself was not touched by reading the copy */
	assert_int_equal(ivsock_ring_readable(&x.a.rx), 15);
	test_region_unmap(&t);
}

/* A second mapping of just the block (what a window maps): a ring written
 * through a view built by ivsock_chan_view_block is read byte-exact
 * through the region view, both ways, wrapping many times. */
static void test_view_block_mapped_elsewhere(void **state)
{
	struct ivsock_region_params p;
	struct test_region t;
	struct ivsock_chan_view w;
	struct conn x;
	uint8_t *blk;
	uint32_t cls;

	(void)state;
	params_classes(&p);
	assert_int_equal(test_region_map(&t, 8U << 20, &p), 0);
	for (cls = 0; cls < t.rg.nclasses; cls++) {
		connect_pair(&t, &x, cls);
		blk = mmap(NULL, x.bsize, PROT_READ | PROT_WRITE, MAP_SHARED, t.fd, (off_t)x.off);
		assert_true(blk != MAP_FAILED);
		/* the connector's process maps only its block */
		assert_int_equal(ivsock_chan_view_block(&w, blk, x.rs, IVSOCK_SIDE_CONNECTOR,
							x.idx, x.gen), 0);
		stream(&w.tx, &x.a.rx, 5 * (size_t)x.rs + 123, 1 + cls);
		stream(&x.a.tx, &w.rx, 3 * (size_t)x.rs + 7, 100 + cls);
		/* counters and doorbell words through the window are what
		 * monitors read through the region */
		ivsock_chan_count(NULL, &w, 11, 22);
		assert_int_equal(ivsock_load_relaxed(&ivsock_chan_end_ctl(&t.rg, x.idx, 0, NULL,
									   NULL)->tx_bytes), 11);
		{
			uint32_t peer = 0, vec = 0;

			assert_int_equal(ivsock_chan_peer_doorbell(NULL, &w, &peer, &vec), 0);
			assert_int_equal(peer, A1.peer_id);
			assert_int_equal(vec, A1.vector);
		}
		/* the process's half of a close: EOF seen through the region */
		assert_int_equal(ivsock_chan_end_close_rings(&w, false), 2);
		assert_int_equal(ivsock_ring_read(&x.a.rx, (char[4]){ 0 }, 4), 0);
		assert_int_equal(ivsock_ring_write(&x.a.tx, "x", 1, false), -EPIPE);
		/* the agent's half: the table */
		assert_int_equal(ivsock_chan_close(&t.rg, x.idx, x.gen, 0, false), 0);
		assert_int_equal(ivsock_chan_close_view(&t.rg, &x.a, false), 1);
		assert_int_equal(ivsock_block_pool_used(&t.rg, 0), 0);
		munmap(blk, x.bsize);
	}
	test_region_unmap(&t);
}

/*
 * A window-like mapping: RW over the end's own half, read-only over the
 * other. Everything a process does on its end (write, read, sleep/wake
 * checks, counters, closing its rings) writes only its half: a store to the
 * other half would fault, which the child reports by dying of SIGSEGV.
 */
static void window_child(struct test_region *t, const struct conn *x, int side)
{
	struct ivsock_chan_view w;
	uint64_t hoff = ivsock_block_half_off(x->rs, side);
	uint64_t hlen = ivsock_block_half_len(x->rs);
	uint8_t *blk, buf[512];
	int i;

	blk = mmap(NULL, x->bsize, PROT_READ, MAP_SHARED, t->fd, (off_t)x->off);
	if (blk == MAP_FAILED || mprotect(blk + hoff, hlen, PROT_READ | PROT_WRITE) < 0)
		_exit(3);
	if (ivsock_chan_view_block(&w, blk, x->rs, side, x->idx, x->gen) < 0)
		_exit(4);
	for (i = 0; i < 200; i++) {
		memset(buf, (uint8_t)i, sizeof(buf));
		if (ivsock_ring_write(&w.tx, buf, sizeof(buf), i % 3 == 0) < 0)
			_exit(5);
		ivsock_ring_publish(&w.tx);
		(void)ivsock_ring_consumer_needs_wake(&w.tx);
		(void)ivsock_ring_read(&w.rx, buf, sizeof(buf));
		(void)ivsock_ring_producer_needs_wake(&w.rx);
		(void)ivsock_ring_consumer_prepare_sleep(&w.rx);
		if (ivsock_ring_writable(&w.tx) == 0)
			(void)ivsock_ring_producer_prepare_sleep(&w.tx);
		ivsock_chan_count(NULL, &w, sizeof(buf), 1);
	}
	atomic_fetch_add(&w.my_ctl->holders, 1);
	atomic_fetch_sub(&w.my_ctl->holders, 1);
	ivsock_st32(&w.my_ctl->vector, 2); /* a forked holder re-points its doorbell */
	ivsock_chan_end_close_rings(&w, true);
	_exit(0);
}

static void test_window_writes_own_half_only(void **state)
{
	struct ivsock_region_params p;
	struct test_region t;
	struct conn x;
	int side;

	(void)state;
	params_classes(&p);
	assert_int_equal(test_region_map(&t, 8U << 20, &p), 0);
	for (side = 0; side < 2; side++) {
		uint8_t *other, *snap;
		uint64_t ooff, olen = 0;
		int status;
		pid_t pid;

		connect_pair(&t, &x, 1);
		/* let the peer have data to read and something to consume */
		assert_int_equal(ivsock_ring_write(side ? &x.c.tx : &x.a.tx, "hello", 5, false), 5);
		ooff = x.off + ivsock_block_half_off(x.rs, !side);
		olen = ivsock_block_half_len(x.rs);
		other = t.base + ooff;
		snap = malloc(olen);
		assert_non_null(snap);
		memcpy(snap, other, olen);
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0)
			window_child(&t, &x, side);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		if (WIFSIGNALED(status))
			fail_msg("end %d wrote outside its half (signal %d)", side, WTERMSIG(status));
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
		/* the other half is byte for byte what it was */
		assert_memory_equal(snap, other, olen);
		free(snap);
		/* and what the end did is visible through the region */
		{
			struct ivsock_end_ctl *mine = ivsock_chan_end_ctl(&t.rg, x.idx, side, NULL, NULL);

			assert_int_equal(ivsock_ld32(&mine->vector), 2);
			assert_true(ivsock_load_relaxed(&mine->tx_bytes) > 0);
			assert_true(ivsock_load_relaxed(&mine->prod.prod_flags) & IVSOCK_RING_RESET);
		}
		assert_int_equal(ivsock_chan_close(&t.rg, x.idx, x.gen, side, true), 0);
		assert_int_equal(ivsock_chan_close(&t.rg, x.idx, x.gen, !side, false), 1);
	}
	test_region_unmap(&t);
}

/* The doorbell a monitor rings is the ctl page copy when it is sane, the
 * table's when the ctl page copy is out of range. */
static void ring_cb(void *arg, uint32_t peer, uint32_t vector)
{
	uint32_t *got = arg;

	got[0] = peer;
	got[1] = vector;
	got[2]++;
}

static void test_doorbell_ctl_then_table(void **state)
{
	struct ivsock_region_params p;
	struct test_region t;
	struct conn x;
	uint32_t got[3] = { 0 };

	(void)state;
	params_classes(&p);
	assert_int_equal(test_region_map(&t, 8U << 20, &p), 0);
	connect_pair(&t, &x, 2);
	/* a forked holder of the acceptor end re-pointed its doorbell */
	ivsock_st32(&x.a.my_ctl->peer_id, 42);
	ivsock_st32(&x.a.my_ctl->vector, 7);
	assert_int_equal(ivsock_chan_release_owner(&t.rg, 0, 1, ring_cb, got), 1);
	assert_int_equal(got[2], 1);
	assert_int_equal(got[0], 42);
	assert_int_equal(got[1], 7);
	assert_int_equal(ivsock_chan_close_view(&t.rg, &x.a, false), 1);
	/* garbage in the ctl page: the agent's table copy is used */
	connect_pair(&t, &x, 2);
	ivsock_st32(&x.a.my_ctl->peer_id, 1U << 20);
	memset(got, 0, sizeof(got));
	assert_int_equal(ivsock_chan_release_owner(&t.rg, 0, 1, ring_cb, got), 1);
	assert_int_equal(got[2], 1);
	assert_int_equal(got[0], A1.peer_id);
	assert_int_equal(got[1], A1.vector);
	{
		uint32_t peer, vec;

		ivsock_st32(&x.a.my_ctl->vector, 1U << 20);
		assert_int_equal(ivsock_chan_peer_doorbell(NULL, &x.c, &peer, &vec), -EPROTO);
		assert_int_equal(ivsock_chan_peer_doorbell(&t.rg, &x.c, &peer, &vec), 0);
		assert_int_equal(peer, A1.peer_id);
	}
	assert_int_equal(ivsock_chan_close_view(&t.rg, &x.a, false), 1);
	assert_int_equal(ivsock_block_pool_used(&t.rg, 0), 0);
	test_region_unmap(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_single_class),
		cmocka_unit_test(test_zero_share),
		cmocka_unit_test(test_bad_params),
		cmocka_unit_test(test_attach_refuses_tampered_classes),
		cmocka_unit_test(test_alloc_per_class_and_vm),
		cmocka_unit_test(test_alignment_and_overlap),
		cmocka_unit_test(test_view_block_copy),
		cmocka_unit_test(test_view_block_mapped_elsewhere),
		cmocka_unit_test(test_window_writes_own_half_only),
		cmocka_unit_test(test_doorbell_ctl_then_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
