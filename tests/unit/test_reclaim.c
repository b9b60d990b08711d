// SPDX-License-Identifier: MIT
/*
 * Forced reclaim of a dead VM (ivsockd's grace period ended:
 * ivsock_chan_reclaim_vm, then ivsock_block_release_vm) while the other end
 * of a channel lives on in another VM. The survivor's channel must be
 * REVOKED under the same generation, its rings must not be reused by any
 * new connection (a new VM at the same index opens connections until its
 * quota is exhausted: no byte crosses), and the survivor's close frees them.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "ivsock/channel.h"
#include "ivsock/directory.h"
#include "ivsock/offer.h"
#include "testutil.h"

static const struct ivsock_end_id C0 = { .vm = 0, .client = 1, .peer_id = 10, .vector = 1 };
static const struct ivsock_end_id A1 = { .vm = 1, .client = 5, .peer_id = 11, .vector = 3 };

struct rang {
	int n;
	uint32_t peer[16];
};

static void ring_cb(void *arg, uint32_t peer, uint32_t vector)
{
	struct rang *r = arg;

	(void)vector;
	if (r->n < 16)
		r->peer[r->n] = peer;
	r->n++;
}

static int setup(void **state)
{
	struct test_region *t = calloc(1, sizeof(*t));
	struct ivsock_region_params p;

	test_params_small(&p);
	p.channel_cap = 64;
	assert_int_equal(test_region_map(t, 1U << 21, &p), 0);
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	test_region_unmap(*state);
	free(*state);
	return 0;
}

static struct ivsock_tuple tup(uint16_t sport)
{
	struct ivsock_tuple t = {
		.src = { .family = IVSOCK_AF_INET, .bytes = { 10, 0, 0, 1 } },
		.dst = { .family = IVSOCK_AF_INET, .bytes = { 10, 0, 0, 2 } },
		.sport = sport, .dport = 80,
	};

	return t;
}

struct pair {
	uint32_t idx, gen;
	struct ivsock_chan_view c, a;
};

static int connect_pair(struct test_region *t, struct pair *p, const struct ivsock_end_id *cid,
			const struct ivsock_end_id *aid, uint16_t sport)
{
	struct ivsock_tuple tp = tup(sport);
	int rc = ivsock_chan_open(&t->rg, cid, &tp, ivsock_chan_dst_vm(&t->rg, cid->vm, &tp), t->rg.default_class, &p->idx, &p->gen);

	if (rc < 0)
		return rc;
	assert_int_equal(ivsock_chan_accept(&t->rg, p->idx, p->gen, cid->vm, aid, &p->a), 0);
	assert_int_equal(ivsock_chan_view_connector(&t->rg, p->idx, p->gen, &p->c), 0);
	return 0;
}

/* What ivsockd does for a VM: disconnect, then (grace over) reclaim. */
static void vm_dies_and_is_reclaimed(struct test_region *t, uint8_t vm, struct rang *r)
{
	ivsock_chan_release_vm(&t->rg, vm, ring_cb, r);
	ivsock_dir_mark_dead(&t->rg, vm);
	ivsock_chan_reclaim_vm(&t->rg, vm, ring_cb, r);
	ivsock_offer_release_vm(&t->rg, vm);
	ivsock_block_release_vm(&t->rg, vm);
	ivsock_dir_remove(&t->rg, vm);
}

static void test_survivor_after_reclaim_with_reuse(void **state)
{
	struct test_region *t = *state;
	static struct pair fresh[64];
	struct rang r = { 0 };
	struct pair s;
	uint32_t used, nfresh = 0, i;
	char buf[64];
	ssize_t n;

	assert_int_equal(ivsock_dir_add(&t->rg, 10, 4, "vm0", NULL), 0);
	assert_int_equal(ivsock_dir_add(&t->rg, 11, 4, "vm1", NULL), 1);
	assert_int_equal(connect_pair(t, &s, &C0, &A1, 1), 0);
	assert_int_equal(ivsock_ring_write(&s.c.tx, "before", 6, false), 6);
	assert_int_equal(ivsock_ring_read(&s.a.rx, buf, sizeof(buf)), 6);

	/* VM 0 (connector, owner of the rings) dies; grace period over */
	vm_dies_and_is_reclaimed(t, 0, &r);
	assert_true(r.n >= 1);
	assert_int_equal(r.peer[0], 11);
	/* REVOKED under the same generation: the survivor's handle matches */
	assert_int_equal(ivsock_chan_state(&t->rg, s.idx, s.gen), IVSOCK_CHAN_REVOKED);
	assert_int_equal(ivsock_chan_state(&t->rg, s.idx, s.gen + 1), 0);
	/* its block is still claimed */
	used = ivsock_block_pool_used(&t->rg, 0);
	assert_int_equal(used, 1);

	/* a new VM takes index 0 and opens connections until it cannot */
	assert_int_equal(ivsock_dir_add(&t->rg, 20, 4, "vm0-new", NULL), 0);
	for (i = 0; i < 64; i++) {
		struct ivsock_end_id a = A1;

		a.client = (uint16_t)(100 + i);
		if (connect_pair(t, &fresh[nfresh], &C0, &a, (uint16_t)(100 + i)) < 0)
			break;
		assert_true(fresh[nfresh].idx != s.idx);
		assert_true(fresh[nfresh].c.block_idx != s.a.block_idx);
		assert_true(fresh[nfresh].c.my_ctl != s.a.peer_ctl &&
			    fresh[nfresh].a.my_ctl != s.a.my_ctl);
		assert_int_equal(ivsock_ring_write(&fresh[nfresh].c.tx, "secret", 6, false), 6);
		assert_int_equal(ivsock_ring_write(&fresh[nfresh].a.tx, "answer", 6, false), 6);
		nfresh++;
	}
	assert_true(nfresh > 0);
	used = ivsock_block_pool_used(&t->rg, 0);
	assert_int_equal(used, 1 + nfresh);
	assert_true(used >= t->rg.class[0].blocks_per_vm || nfresh + 1 == t->rg.channel_cap);

	/* the survivor sees a reset, never another connection's bytes */
	n = ivsock_ring_read(&s.a.rx, buf, sizeof(buf));
	assert_int_equal(n, -ECONNRESET);
	/* what it writes lands in its own block, which no new connection reads */
	ivsock_ring_write(&s.a.tx, "leak", 4, false);
	for (i = 0; i < nfresh; i++) {
		assert_int_equal(ivsock_ring_read(&fresh[i].a.rx, buf, sizeof(buf)), 6);
		assert_memory_equal(buf, "secret", 6);
		assert_int_equal(ivsock_ring_read(&fresh[i].c.rx, buf, sizeof(buf)), 6);
		assert_memory_equal(buf, "answer", 6);
	}
	assert_int_equal(ivsock_chan_state(&t->rg, s.idx, s.gen), IVSOCK_CHAN_REVOKED);

	/* the survivor closes: its block is freed now, and only now */
	assert_int_equal(ivsock_chan_close_view(&t->rg, &s.a, false), 1);
	assert_int_equal(ivsock_chan_state(&t->rg, s.idx, s.gen), 0);
	assert_int_equal(ivsock_block_pool_used(&t->rg, 0), used - 1);
	for (i = 0; i < nfresh; i++) {
		assert_int_equal(ivsock_chan_close_view(&t->rg, &fresh[i].c, false), 0);
		assert_int_equal(ivsock_chan_close_view(&t->rg, &fresh[i].a, false), 1);
	}
	assert_int_equal(ivsock_block_pool_used(&t->rg, 0), 0);
}

/* The same when the survivor closes with the legacy (idx, gen) call. */
static void test_survivor_close_by_index(void **state)
{
	struct test_region *t = *state;
	struct rang r = { 0 };
	struct pair s;

	assert_int_equal(ivsock_dir_add(&t->rg, 10, 4, "vm0", NULL), 0);
	assert_int_equal(ivsock_dir_add(&t->rg, 11, 4, "vm1", NULL), 1);
	assert_int_equal(connect_pair(t, &s, &C0, &A1, 1), 0);
	vm_dies_and_is_reclaimed(t, 0, &r);
	assert_int_equal(ivsock_block_pool_used(&t->rg, 0), 1);
	assert_int_equal(ivsock_chan_close(&t->rg, s.idx, s.gen, 1, false), 1);
	assert_int_equal(ivsock_block_pool_used(&t->rg, 0), 0);
}

/* Without a live end everything goes at once: closed survivors, offers
 * never taken, slots left in INIT or ABANDONED by the dead VM. */
static void test_reclaim_frees_what_has_no_live_end(void **state)
{
	struct test_region *t = *state;
	struct ivsock_tuple tp = tup(9);
	struct rang r = { 0 };
	struct pair closed;
	uint32_t idx, gen, g;
	int i;

	assert_int_equal(ivsock_dir_add(&t->rg, 10, 4, "vm0", NULL), 0);
	assert_int_equal(ivsock_dir_add(&t->rg, 11, 4, "vm1", NULL), 1);
	assert_int_equal(connect_pair(t, &closed, &C0, &A1, 1), 0);
	assert_int_equal(ivsock_chan_close_view(&t->rg, &closed.a, false), 0);
	assert_int_equal(ivsock_chan_open(&t->rg, &C0, &tp, ivsock_chan_dst_vm(&t->rg, C0.vm, &tp), t->rg.default_class, &idx, &gen), 0); /* offered */
	tp.sport++;
	assert_int_equal(ivsock_chan_open(&t->rg, &C0, &tp, ivsock_chan_dst_vm(&t->rg, C0.vm, &tp), t->rg.default_class, &idx, &gen), 0);
	assert_int_equal(ivsock_chan_abandon(&t->rg, idx, gen), 0);      /* abandoned */
	for (i = 0; i < (int)t->rg.channel_cap; i++) {                     /* INIT */
		g = ivsock_slot_claim(&t->rg.channels[i].slot, 0, 1);
		if (g)
			break;
	}
	assert_true(g != 0);
	vm_dies_and_is_reclaimed(t, 0, &r);
	for (i = 0; i < (int)t->rg.channel_cap; i++)
		assert_int_equal(ivsock_slot_get(&t->rg.channels[i].slot).state, IVSOCK_SLOT_FREE);
	assert_int_equal(ivsock_block_pool_used(&t->rg, 0), 0);
}

/* The dead VM was the acceptor: nothing of its own partition is involved;
 * the live connector sees a reset and frees at close. */
static void test_dead_acceptor_vm(void **state)
{
	struct test_region *t = *state;
	struct rang r = { 0 };
	struct pair s;

	assert_int_equal(ivsock_dir_add(&t->rg, 10, 4, "vm0", NULL), 0);
	assert_int_equal(ivsock_dir_add(&t->rg, 11, 4, "vm1", NULL), 1);
	assert_int_equal(connect_pair(t, &s, &C0, &A1, 1), 0);
	vm_dies_and_is_reclaimed(t, 1, &r);
	assert_int_equal(ivsock_ring_read(&s.c.rx, (char[4]){ 0 }, 4), -ECONNRESET);
	assert_int_equal(ivsock_block_pool_used(&t->rg, 0), 1);
	assert_int_equal(ivsock_chan_close_view(&t->rg, &s.c, false), 1);
	assert_int_equal(ivsock_block_pool_used(&t->rg, 0), 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_survivor_after_reclaim_with_reuse),
		T(test_survivor_close_by_index),
		T(test_reclaim_frees_what_has_no_live_end),
		T(test_dead_acceptor_vm),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
