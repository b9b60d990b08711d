// SPDX-License-Identifier: MIT
/*
 * Unit tests of the channel table (protocol/src/channel.c): open, accept,
 * the abandon/accept race, close by both ends, bulk release of a dead
 * process or VM with doorbells for the survivors, and refusal of corrupted
 * block references.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "ivsock/channel.h"
#include "ivsock/offer.h"
#include "testutil.h"

static const struct ivsock_end_id C0 = { .vm = 0, .client = 1, .peer_id = 10, .vector = 1 };
static const struct ivsock_end_id A1 = { .vm = 1, .client = 5, .peer_id = 11, .vector = 3 };

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

static void connect_pair(struct test_region *t, struct pair *p, const struct ivsock_end_id *cid,
			 const struct ivsock_end_id *aid)
{
	struct ivsock_tuple tp = tup(1);

	assert_int_equal(ivsock_chan_open(&t->rg, cid, &tp, ivsock_chan_dst_vm(&t->rg, cid->vm, &tp), t->rg.default_class, &p->idx, &p->gen), 0);
	assert_int_equal(ivsock_chan_accept(&t->rg, p->idx, p->gen, cid->vm, aid, &p->a), 0);
	assert_int_equal(ivsock_chan_view_connector(&t->rg, p->idx, p->gen, &p->c), 0);
}

static void test_open_accept_data(void **state)
{
	struct test_region *t = *state;
	struct ivsock_tuple tp = tup(4000);
	struct ivsock_chan_view c, a;
	uint32_t idx, gen;
	char buf[16];

	assert_int_equal(ivsock_chan_open(&t->rg, &C0, &tp, ivsock_chan_dst_vm(&t->rg, C0.vm, &tp), t->rg.default_class, &idx, &gen), 0);
	assert_int_equal(ivsock_chan_state(&t->rg, idx, gen), IVSOCK_CHAN_OFFERED);
	assert_int_equal(ivsock_chan_state(&t->rg, idx, gen + 1), 0);
	assert_int_equal(ivsock_block_pool_used(&t->rg, 0), 1);
	assert_int_equal(ivsock_block_pool_used(&t->rg, 1), 0);
	assert_true(ivsock_tuple_equal(&t->rg.channels[idx].tuple, &tp));
	assert_int_equal(ivsock_chan_view_connector(&t->rg, idx, gen, &c), 0);
	assert_int_equal(ivsock_chan_learn_peer(&t->rg, &c), -EAGAIN);
	/* the connector can write before the acceptor attached */
	assert_int_equal(ivsock_ring_write(&c.tx, "early", 5, false), 5);
	assert_int_equal(ivsock_chan_accept(&t->rg, idx, gen + 1, 0, &A1, &a), -ESTALE);
	assert_int_equal(ivsock_chan_accept(&t->rg, idx, gen, 1, &A1, &a), -EPROTO);
	assert_int_equal(ivsock_chan_accept(&t->rg, 999, gen, 0, &A1, &a), -EPROTO);
	assert_int_equal(ivsock_chan_accept(&t->rg, idx, gen, 0, &A1, &a), 0);
	assert_int_equal(ivsock_chan_state(&t->rg, idx, gen), IVSOCK_CHAN_CONNECTED);
	assert_int_equal(a.side, IVSOCK_SIDE_ACCEPTOR);
	assert_int_equal(a.peer.vm, 0);
	assert_int_equal(a.peer.peer_id, 10);
	assert_int_equal(a.peer.vector, 1);
	/* accepting twice: the second is stale */
	{
		struct ivsock_chan_view a2;

		assert_int_equal(ivsock_chan_accept(&t->rg, idx, gen, 0, &A1, &a2), -ESTALE);
	}
	assert_int_equal(ivsock_chan_learn_peer(&t->rg, &c), 0);
	assert_int_equal(c.peer.vm, 1);
	assert_int_equal(c.peer.peer_id, 11);
	assert_int_equal(c.peer.vector, 3);
	assert_int_equal(c.peer.client, 5);
	/* both directions */
	assert_int_equal(ivsock_ring_read(&a.rx, buf, sizeof(buf)), 5);
	assert_memory_equal(buf, "early", 5);
	assert_int_equal(ivsock_ring_write(&a.tx, "reply", 5, false), 5);
	assert_int_equal(ivsock_ring_read(&c.rx, buf, sizeof(buf)), 5);
	assert_memory_equal(buf, "reply", 5);
	ivsock_chan_count(&t->rg, &c, 5, 5);
	ivsock_chan_count(&t->rg, &c, 10, 0);
	assert_int_equal(ivsock_load_relaxed(&c.my_ctl->tx_bytes), 15);
	assert_int_equal(ivsock_load_relaxed(&c.my_ctl->rx_bytes), 5);
	/* what monitors read: the same ctl page, found through the table */
	assert_ptr_equal(ivsock_chan_end_ctl(&t->rg, idx, 0, NULL, NULL), c.my_ctl);
	assert_ptr_equal(ivsock_chan_end_ctl(&t->rg, idx, 1, NULL, NULL), a.my_ctl);
	assert_ptr_equal(c.peer_ctl, a.my_ctl);
	assert_int_equal(ivsock_chan_peer_flags(&t->rg, &c), IVSOCK_END_ATTACHED);
	assert_int_equal(ivsock_chan_count_vm(&t->rg, 0), 1);
	assert_int_equal(ivsock_chan_count_vm(&t->rg, 1), 1);
	assert_int_equal(ivsock_chan_count_vm(&t->rg, 2), 0);
}

static void test_close_both_ends(void **state)
{
	struct test_region *t = *state;
	struct pair p;
	char buf[8];

	connect_pair(t, &p, &C0, &A1);
	assert_int_equal(ivsock_ring_write(&p.a.tx, "bye", 3, false), 3);
	assert_int_equal(ivsock_chan_close(&t->rg, p.idx, p.gen, IVSOCK_SIDE_ACCEPTOR, false), 0);
	/* the connector drains, then sees EOF; its writes get EPIPE */
	assert_int_equal(ivsock_ring_read(&p.c.rx, buf, sizeof(buf)), 3);
	assert_int_equal(ivsock_ring_read(&p.c.rx, buf, sizeof(buf)), 0);
	assert_int_equal(ivsock_ring_write(&p.c.tx, "x", 1, false), -EPIPE);
	assert_int_equal(ivsock_chan_peer_flags(&t->rg, &p.c),
			 IVSOCK_END_ATTACHED | IVSOCK_END_CLOSED);
	assert_int_equal(ivsock_block_pool_used(&t->rg, 0), 1);
	/* the last close frees rings and slot */
	assert_int_equal(ivsock_chan_close(&t->rg, p.idx, p.gen, IVSOCK_SIDE_CONNECTOR, false), 1);
	assert_int_equal(ivsock_block_pool_used(&t->rg, 0), 0);
	assert_int_equal(ivsock_chan_state(&t->rg, p.idx, p.gen), 0);
	assert_int_equal(ivsock_chan_close(&t->rg, p.idx, p.gen, IVSOCK_SIDE_CONNECTOR, false), -ESTALE);
	assert_int_equal(ivsock_chan_close(&t->rg, p.idx, p.gen, 2, false), -EINVAL);
	assert_int_equal(ivsock_chan_close(&t->rg, 999, p.gen, 0, false), -EINVAL);
}

static void test_close_reset(void **state)
{
	struct test_region *t = *state;
	struct pair p;
	char buf[8];

	connect_pair(t, &p, &C0, &A1);
	assert_int_equal(ivsock_chan_close(&t->rg, p.idx, p.gen, IVSOCK_SIDE_CONNECTOR, true), 0);
	assert_int_equal(ivsock_ring_read(&p.a.rx, buf, sizeof(buf)), -ECONNRESET);
	assert_int_equal(ivsock_ring_write(&p.a.tx, "x", 1, false), -EPIPE);
	assert_int_equal(ivsock_chan_close(&t->rg, p.idx, p.gen, IVSOCK_SIDE_ACCEPTOR, false), 1);
	assert_int_equal(ivsock_block_pool_used(&t->rg, 0), 0);
}

/* Connector gives up first: the acceptor must not attach. */
static void test_abandon_then_accept(void **state)
{
	struct test_region *t = *state;
	struct ivsock_tuple tp = tup(2);
	struct ivsock_chan_view a, c;
	uint32_t idx, gen;
	char back[16];

	assert_int_equal(ivsock_chan_open(&t->rg, &C0, &tp, ivsock_chan_dst_vm(&t->rg, C0.vm, &tp), t->rg.default_class, &idx, &gen), 0);
	assert_int_equal(ivsock_chan_view_connector(&t->rg, idx, gen, &c), 0);
	assert_int_equal(ivsock_ring_write(&c.tx, "pending", 7, false), 7);
	assert_int_equal(ivsock_chan_abandon(&t->rg, idx, gen), 0);
	assert_int_equal(ivsock_chan_state(&t->rg, idx, gen), IVSOCK_CHAN_ABANDONED);
	assert_int_equal(ivsock_chan_accept(&t->rg, idx, gen, 0, &A1, &a), -ESTALE);
	/* we own the fallback: take the bytes back for TCP */
	assert_int_equal(ivsock_ring_take_back(&c.tx, back, sizeof(back)), 7);
	assert_memory_equal(back, "pending", 7);
	assert_int_equal(ivsock_chan_abandon(&t->rg, idx, gen), -ESTALE);
	assert_int_equal(ivsock_chan_close(&t->rg, idx, gen, IVSOCK_SIDE_CONNECTOR, false), 1);
	assert_int_equal(ivsock_block_pool_used(&t->rg, 0), 0);
	/* end[1] was never written */
	assert_int_equal(ivsock_load_relaxed(&t->rg.channels[idx].end[1].flags), 0);
}

/* Acceptor wins: abandoning fails and the connector keeps the rings. */
static void test_accept_then_abandon(void **state)
{
	struct test_region *t = *state;
	struct pair p;

	connect_pair(t, &p, &C0, &A1);
	assert_int_equal(ivsock_chan_abandon(&t->rg, p.idx, p.gen), -ESTALE);
	assert_int_equal(ivsock_chan_state(&t->rg, p.idx, p.gen), IVSOCK_CHAN_CONNECTED);
}

/* Closing an OFFERED channel abandons and frees it at once. */
static void test_close_offered(void **state)
{
	struct test_region *t = *state;
	struct ivsock_tuple tp = tup(3);
	struct ivsock_chan_view a;
	uint32_t idx, gen;

	assert_int_equal(ivsock_chan_open(&t->rg, &C0, &tp, ivsock_chan_dst_vm(&t->rg, C0.vm, &tp), t->rg.default_class, &idx, &gen), 0);
	assert_int_equal(ivsock_chan_close(&t->rg, idx, gen, IVSOCK_SIDE_CONNECTOR, false), 1);
	assert_int_equal(ivsock_block_pool_used(&t->rg, 0), 0);
	assert_int_equal(ivsock_chan_accept(&t->rg, idx, gen, 0, &A1, &a), -ESTALE);
}

static void test_quota_and_table_full(void **state)
{
	struct test_region *t = *state;
	struct ivsock_tuple tp = tup(9);
	uint32_t idx, gen, per = t->rg.class[t->rg.default_class].blocks_per_vm, n = 0;

	/* VM 0 runs out of blocks (1 per channel) or of channels */
	while (ivsock_chan_open(&t->rg, &C0, &tp, ivsock_chan_dst_vm(&t->rg, C0.vm, &tp), t->rg.default_class, &idx, &gen) == 0)
		n++;
	assert_int_equal(n, per < t->rg.channel_cap ? per : t->rg.channel_cap);
	assert_int_equal(ivsock_chan_open(&t->rg, &C0, &tp, ivsock_chan_dst_vm(&t->rg, C0.vm, &tp), t->rg.default_class, &idx, &gen), -ENOSPC);
	/* a failed open leaves no block claimed */
	assert_int_equal(ivsock_block_pool_used(&t->rg, 0), n);
	/* VM 1 is not affected by VM 0's quota */
	if (n < t->rg.channel_cap)
		assert_int_equal(ivsock_chan_open(&t->rg, &A1, &tp, ivsock_chan_dst_vm(&t->rg, A1.vm, &tp), t->rg.default_class, &idx, &gen), 0);
	{
		struct ivsock_end_id bad = C0;

		bad.vm = 4;
		assert_int_equal(ivsock_chan_open(&t->rg, &bad, &tp, ivsock_chan_dst_vm(&t->rg, bad.vm, &tp), t->rg.default_class, &idx, &gen), -EINVAL);
	}
}

struct rang {
	int n;
	uint32_t peer[8], vector[8];
};

static void ring_cb(void *arg, uint32_t peer, uint32_t vector)
{
	struct rang *r = arg;

	if (r->n < 8) {
		r->peer[r->n] = peer;
		r->vector[r->n] = vector;
	}
	r->n++;
}

static void test_release_owner(void **state)
{
	struct test_region *t = *state;
	struct ivsock_end_id other = A1;
	struct pair p1, p2, p3;
	struct rang r = { 0 };
	char buf[4];

	other.client = 6;
	connect_pair(t, &p1, &C0, &A1);
	connect_pair(t, &p2, &C0, &A1);
	connect_pair(t, &p3, &C0, &other);
	/* process (vm 1, client 5) died */
	assert_int_equal(ivsock_chan_release_owner(&t->rg, 1, 5, ring_cb, &r), 2);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.peer[0], 10);
	assert_int_equal(r.vector[0], 1);
	/* survivors see a reset and a dead peer */
	assert_int_equal(ivsock_ring_read(&p1.c.rx, buf, sizeof(buf)), -ECONNRESET);
	assert_int_equal(ivsock_ring_write(&p1.c.tx, "x", 1, false), -EPIPE);
	assert_int_equal(ivsock_chan_peer_flags(&t->rg, &p1.c),
			 IVSOCK_END_ATTACHED | IVSOCK_END_CLOSED | IVSOCK_END_DEAD);
	/* the third channel is untouched */
	assert_int_equal(ivsock_chan_peer_flags(&t->rg, &p3.c), IVSOCK_END_ATTACHED);
	assert_int_equal(ivsock_ring_write(&p3.c.tx, "x", 1, false), 1);
	/* nothing left to release for that owner */
	assert_int_equal(ivsock_chan_release_owner(&t->rg, 1, 5, ring_cb, &r), 0);
	/* the survivors' closes free the channels */
	assert_int_equal(ivsock_chan_close(&t->rg, p1.idx, p1.gen, 0, false), 1);
	assert_int_equal(ivsock_chan_close(&t->rg, p2.idx, p2.gen, 0, false), 1);
	assert_int_equal(ivsock_block_pool_used(&t->rg, 0), 1);
}

static void test_release_vm(void **state)
{
	struct test_region *t = *state;
	struct ivsock_end_id a2 = A1;
	struct pair p1, p2;
	struct rang r = { 0 };

	a2.client = 77;
	connect_pair(t, &p1, &C0, &A1);
	connect_pair(t, &p2, &C0, &a2);
	/* VM 0 (the connectors) died: every channel of it is closed */
	assert_int_equal(ivsock_chan_release_vm(&t->rg, 0, ring_cb, &r), 2);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.peer[0], 11);
	assert_int_equal(r.vector[0], 3);
	assert_int_equal(ivsock_ring_read(&p2.a.rx, (char[4]){ 0 }, 4), -ECONNRESET);
	assert_int_equal(ivsock_chan_close(&t->rg, p1.idx, p1.gen, 1, false), 1);
	assert_int_equal(ivsock_chan_close(&t->rg, p2.idx, p2.gen, 1, false), 1);
	assert_int_equal(ivsock_chan_count_vm(&t->rg, 0), 0);
	assert_int_equal(ivsock_block_pool_used(&t->rg, 0), 0);
}

/* Both ends inside the dying VM: the channel must be freed, not leaked. */
static void test_release_vm_local_channel(void **state)
{
	struct test_region *t = *state;
	struct ivsock_end_id c2 = C0;
	struct pair p;
	struct rang r = { 0 };

	c2.client = 2;
	connect_pair(t, &p, &C0, &c2);
	assert_int_equal(ivsock_chan_release_vm(&t->rg, 0, ring_cb, &r), 1);
	assert_int_equal(r.n, 0); /* nobody left to ring */
	assert_int_equal(ivsock_chan_state(&t->rg, p.idx, p.gen), 0);
	assert_int_equal(ivsock_block_pool_used(&t->rg, 0), 0);
	assert_int_equal(ivsock_chan_count_vm(&t->rg, 0), 0);
}

/* ---- corrupted references written by a (hostile) connector ---- */

static void open_offered(struct test_region *t, uint32_t *idx, uint32_t *gen)
{
	struct ivsock_tuple tp = tup(11);

	assert_int_equal(ivsock_chan_open(&t->rg, &C0, &tp, ivsock_chan_dst_vm(&t->rg, C0.vm, &tp), t->rg.default_class, idx, gen), 0);
}

static void test_corrupt_refs(void **state)
{
	struct test_region *t = *state;
	struct ivsock_chan_view a;
	struct ivsock_channel *c;
	uint32_t idx, gen, save, save_gen, per = t->rg.class[0].blocks_per_vm;
	int i;

	open_offered(t, &idx, &gen);
	c = &t->rg.channels[idx];
	save = c->block;
	save_gen = c->block_gen;
	for (i = 0; i < 8; i++) {
		int want = -EPROTO;

		c->block = save;
		c->block_gen = save_gen;
		c->end[0].vm_index = 0;
		c->end[0].peer_id = 10;
		switch (i) {
		case 0: c->block = UINT32_MAX; break;                     /* out of the pool */
		case 1: c->block = t->rg.nblocks; break;
		case 2: c->block = per; break;                            /* VM 1's partition */
		case 3: c->block = save + 1; want = -ESTALE; break;       /* a free block of ours */
		case 4: c->block_gen = save_gen + 1; want = -ESTALE; break;
		case 5: c->end[0].vm_index = 200; break;
		case 6: c->end[0].peer_id = 1U << 20; break;
		case 7: c->block_gen = 0; break;                          /* no block at all */
		}
		assert_int_equal(ivsock_chan_accept(&t->rg, idx, gen, 0, &A1, &a), want);
		/* a refused accept leaves the channel OFFERED */
		assert_int_equal(ivsock_chan_state(&t->rg, idx, gen), IVSOCK_CHAN_OFFERED);
	}
	/* a block owned by another client of the connector's VM */
	{
		uint32_t other, og;

		assert_int_equal(ivsock_block_alloc(&t->rg, 0, 0, 9, &other, &og), 0);
		c->block = other;
		c->block_gen = og;
		assert_int_equal(ivsock_chan_accept(&t->rg, idx, gen, 0, &A1, &a), -ESTALE);
		assert_int_equal(ivsock_block_free(&t->rg, other, og), 0);
	}
	/* a ring whose indices are inconsistent */
	c->block = save;
	c->block_gen = save_gen;
	c->end[0].vm_index = 0;
	c->end[0].peer_id = 10;
	{
		struct ivsock_end_ctl *h = ivsock_block_ctl(ivsock_region_block_mem(&t->rg, save),
							    t->rg.class[0].ring_size, 0);

		ivsock_store_relaxed(&h->prod.tail, t->rg.class[0].ring_size * 3);
		assert_int_equal(ivsock_chan_accept(&t->rg, idx, gen, 0, &A1, &a), -EPROTO);
		ivsock_store_relaxed(&h->prod.tail, 0);
	}
	assert_int_equal(ivsock_chan_accept(&t->rg, idx, gen, 0, &A1, &a), 0);
}

static void test_corrupt_peer_end(void **state)
{
	struct test_region *t = *state;
	struct pair p;

	connect_pair(t, &p, &C0, &A1);
	t->rg.channels[p.idx].end[1].vector = 1U << 17;
	assert_int_equal(ivsock_chan_learn_peer(&t->rg, &p.c), -EPROTO);
	p.c.gen++;
	assert_int_equal(ivsock_chan_learn_peer(&t->rg, &p.c), -ESTALE);
}

/* A forged block reference into another VM's partition is not freed on close. */
static void test_free_only_own_partition(void **state)
{
	struct test_region *t = *state;
	struct pair p;
	uint32_t other, og;

	connect_pair(t, &p, &C0, &A1);
	assert_int_equal(ivsock_block_alloc(&t->rg, 1, 0, 5, &other, &og), 0);
	t->rg.channels[p.idx].block = other;
	t->rg.channels[p.idx].block_gen = og;
	assert_int_equal(ivsock_chan_close(&t->rg, p.idx, p.gen, 1, false), 0);
	assert_int_equal(ivsock_chan_close(&t->rg, p.idx, p.gen, 0, false), 1);
	assert_int_equal(ivsock_block_pool_used(&t->rg, 1), 1);
	assert_int_equal(ivsock_block_pool_used(&t->rg, 0), 1); /* the real block leaked */
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_open_accept_data),
		T(test_close_both_ends),
		T(test_close_reset),
		T(test_abandon_then_accept),
		T(test_accept_then_abandon),
		T(test_close_offered),
		T(test_quota_and_table_full),
		T(test_release_owner),
		T(test_release_vm),
		T(test_release_vm_local_channel),
		T(test_corrupt_refs),
		T(test_corrupt_peer_end),
		T(test_free_only_own_partition),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
