// SPDX-License-Identifier: MIT
/*
 * A hostile third VM in the domain against the channel protocol
 * (protocol/src/channel.c, offer.c): it tries to take an offer meant for
 * another VM, to attach to that VM's channel directly, and forges ring
 * references (other partition, stale generation, another channel's ring).
 * Every attempt must fail with a clean error, leave the victim's channel and
 * rings untouched, and the real acceptor must still connect (or the socket
 * stays on TCP).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "ivsock/channel.h"
#include "ivsock/directory.h"
#include "ivsock/listener.h"
#include "ivsock/offer.h"
#include "testutil.h"

/* VM 0 connects to VM 1 (10.0.0.2:80); VM 2 (10.0.0.3) is the third VM and
 * also listens on :80 (wildcard), hoping to be taken for the destination. */
static const struct ivsock_end_id C0 = { .vm = 0, .client = 1, .peer_id = 10, .vector = 1 };
static const struct ivsock_end_id A1 = { .vm = 1, .client = 5, .peer_id = 11, .vector = 3 };
static const struct ivsock_end_id E2 = { .vm = 2, .client = 9, .peer_id = 12, .vector = 2 };

static const struct ivsock_addr ADDR[3] = {
	{ .family = IVSOCK_AF_INET, .bytes = { 10, 0, 0, 1 } },
	{ .family = IVSOCK_AF_INET, .bytes = { 10, 0, 0, 2 } },
	{ .family = IVSOCK_AF_INET, .bytes = { 10, 0, 0, 3 } },
};

static int setup(void **state)
{
	struct test_region *t = calloc(1, sizeof(*t));
	struct ivsock_region_params p;
	struct ivsock_addr any = { .family = IVSOCK_AF_INET };
	uint32_t lg;
	int i;

	test_params_small(&p);
	assert_int_equal(test_region_map(t, 1U << 20, &p), 0);
	for (i = 0; i < 3; i++) {
		assert_int_equal(ivsock_dir_add(&t->rg, 10 + i, 4, "vm", NULL), i);
		assert_int_equal(ivsock_dir_set_addrs(&t->rg, i, &ADDR[i], 1), 0);
	}
	assert_true(ivsock_listener_add(&t->rg, 1, 5, &ADDR[1], 80, 0, &lg) >= 0);
	assert_true(ivsock_listener_add(&t->rg, 2, 9, &any, 80, 0, &lg) >= 0);
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	test_region_unmap(*state);
	free(*state);
	return 0;
}

static struct ivsock_tuple tup(uint16_t sport, int dst)
{
	struct ivsock_tuple t = { .src = ADDR[0], .dst = ADDR[dst], .sport = sport, .dport = 80 };

	return t;
}

struct offered {
	struct ivsock_tuple t;
	uint32_t idx, gen, oidx, ogen;
	struct ivsock_chan_view c;
};

static void offer(struct test_region *t, struct offered *o, uint16_t sport)
{
	int rc;

	o->t = tup(sport, 1);
	assert_int_equal(ivsock_chan_open(&t->rg, &C0, &o->t, ivsock_chan_dst_vm(&t->rg, C0.vm, &o->t), t->rg.default_class, &o->idx, &o->gen), 0);
	assert_int_equal(ivsock_chan_view_connector(&t->rg, o->idx, o->gen, &o->c), 0);
	rc = ivsock_offer_post(&t->rg, 0, 1, &o->t, o->idx, o->gen, &o->ogen);
	assert_true(rc >= 0);
	o->oidx = (uint32_t)rc;
}

/* The third VM cannot take the offer (left in place) nor attach directly. */
static void test_offer_theft(void **state)
{
	struct test_region *t = *state;
	struct ivsock_chan_view v;
	struct offered o;
	uint32_t ch, cg;
	uint8_t owner;

	offer(t, &o, 1000);
	assert_int_equal(t->rg.channels[o.idx].dst_vm, 1);
	assert_int_equal(ivsock_offer_take_as(&t->rg, &o.t, 2, &ch, &cg, &owner), -EACCES);
	assert_int_equal(ivsock_slot_get(&t->rg.offers[o.oidx].slot).state, IVSOCK_OFFER_POSTED);
	/* straight at the channel, skipping the offer table */
	assert_int_equal(ivsock_chan_accept(&t->rg, o.idx, o.gen, 0, &E2, &v), -EACCES);
	assert_int_equal(ivsock_chan_state(&t->rg, o.idx, o.gen), IVSOCK_CHAN_OFFERED);
	assert_int_equal(t->rg.channels[o.idx].end[1].flags, 0);
	/* the destination VM still gets it */
	assert_int_equal(ivsock_offer_take_as(&t->rg, &o.t, 1, &ch, &cg, &owner), 0);
	assert_int_equal(ch, o.idx);
	assert_int_equal(ivsock_chan_accept(&t->rg, ch, cg, owner, &A1, &v), 0);
	assert_int_equal(ivsock_chan_learn_peer(&t->rg, &o.c), 0);
	assert_int_equal(o.c.peer.vm, 1);
	assert_int_equal(ivsock_ring_write(&o.c.tx, "hello", 5, false), 5);
	assert_int_equal(ivsock_ring_read(&v.rx, (char[8]){ 0 }, 8), 5);
}

/* A VM without the destination address, or without a listener for it,
 * takes nothing; a loopback offer never leaves its VM. */
static void test_take_needs_address_and_listener(void **state)
{
	struct test_region *t = *state;
	struct ivsock_addr lo = { .family = IVSOCK_AF_INET, .bytes = { 127, 0, 0, 1 } };
	struct ivsock_tuple tl = { .src = lo, .dst = lo, .sport = 5, .dport = 80 };
	struct ivsock_tuple t81 = tup(7, 1);
	uint32_t idx, gen, og, ch, cg;

	t81.dport = 81; /* VM 1 has no listener on 81 */
	assert_int_equal(ivsock_chan_open(&t->rg, &C0, &t81, ivsock_chan_dst_vm(&t->rg, C0.vm, &t81), t->rg.default_class, &idx, &gen), 0);
	assert_true(ivsock_offer_post(&t->rg, 0, 1, &t81, idx, gen, &og) >= 0);
	assert_int_equal(ivsock_offer_take_as(&t->rg, &t81, 1, &ch, &cg, NULL), -EACCES);
	assert_int_equal(ivsock_chan_close(&t->rg, idx, gen, 0, false), 1);

	assert_int_equal(ivsock_chan_open(&t->rg, &C0, &tl, ivsock_chan_dst_vm(&t->rg, C0.vm, &tl), t->rg.default_class, &idx, &gen), 0);
	assert_int_equal(t->rg.channels[idx].dst_vm, 0);
	assert_true(ivsock_offer_post(&t->rg, 0, 1, &tl, idx, gen, &og) >= 0);
	/* VM 2 listens on the wildcard (loopback included) but is not VM 0 */
	assert_int_equal(ivsock_offer_take_as(&t->rg, &tl, 2, &ch, &cg, NULL), -ENOENT);
	assert_int_equal(ivsock_offer_take_as(&t->rg, &tl, 7, &ch, &cg, NULL), -EINVAL);
}

/* Forged block references at accept: refused, nothing of the victim moves. */
static void test_forged_refs_at_accept(void **state)
{
	struct test_region *t = *state;
	struct ivsock_chan_view v;
	struct ivsock_channel *c;
	struct offered o, other;
	uint32_t r1, g1, foreign, fg;

	offer(t, &other, 2000); /* another live channel of VM 0 */
	offer(t, &o, 1000);
	c = &t->rg.channels[o.idx];
	r1 = c->block;
	g1 = c->block_gen;
	assert_int_equal(ivsock_block_alloc(&t->rg, 2, 0, 9, &foreign, &fg), 0);

	/* 1. a block of the third VM's partition */
	c->block = foreign;
	c->block_gen = fg;
	assert_int_equal(ivsock_chan_accept(&t->rg, o.idx, o.gen, 0, &A1, &v), -EPROTO);
	/* 2. right partition, stale generation */
	c->block = r1;
	c->block_gen = g1 + 1;
	assert_int_equal(ivsock_chan_accept(&t->rg, o.idx, o.gen, 0, &A1, &v), -ESTALE);
	/* 3. right partition, a block another client of the connector's VM
	 * claimed (the generation read from its slot) */
	{
		uint32_t mine, mg;

		assert_int_equal(ivsock_block_alloc(&t->rg, 0, 0, 7, &mine, &mg), 0);
		c->block = mine;
		c->block_gen = mg;
		assert_int_equal(ivsock_chan_accept(&t->rg, o.idx, o.gen, 0, &A1, &v), -ESTALE);
		assert_int_equal(ivsock_block_free(&t->rg, mine, mg), 0);
	}
	/* 4. out of the pool */
	c->block = 0xfffffff0U;
	assert_int_equal(ivsock_chan_accept(&t->rg, o.idx, o.gen, 0, &A1, &v), -EPROTO);
	/* 5. the connector's end says another VM than the slot owner */
	c->block = r1;
	c->block_gen = g1;
	c->end[0].vm_index = 2;
	assert_int_equal(ivsock_chan_accept(&t->rg, o.idx, o.gen, 0, &A1, &v), -EPROTO);
	c->end[0].vm_index = 0;
	/* nothing moved */
	assert_int_equal(ivsock_chan_state(&t->rg, o.idx, o.gen), IVSOCK_CHAN_OFFERED);
	assert_int_equal(c->end[1].flags, 0);
	assert_int_equal(ivsock_block_pool_used(&t->rg, 2), 1);
	assert_int_equal(ivsock_block_pool_used(&t->rg, 0), 2);
	/* repaired: it connects */
	assert_int_equal(ivsock_chan_accept(&t->rg, o.idx, o.gen, 0, &A1, &v), 0);
	/* the honest acceptor's failure path leaves the connector on TCP */
	assert_int_equal(ivsock_chan_abandon(&t->rg, other.idx, other.gen), 0);
	assert_int_equal(ivsock_chan_accept(&t->rg, other.idx, other.gen, 0, &A1, &v), -ESTALE);
}

/* After accept, the third VM rewrites the shared reference to point at
 * another live channel's block (right partition, right generation, read
 * from the block slot). Closing with the view frees our own block only;
 * the other channel keeps flowing. */
static void test_close_uses_validated_refs(void **state)
{
	struct test_region *t = *state;
	struct ivsock_chan_view a, va;
	struct ivsock_channel *c;
	struct offered o, other;
	uint32_t ch, cg;
	char buf[8];

	offer(t, &other, 2000);
	assert_int_equal(ivsock_offer_take_as(&t->rg, &other.t, 1, &ch, &cg, NULL), 0);
	assert_int_equal(ivsock_chan_accept(&t->rg, ch, cg, 0, &A1, &va), 0);
	offer(t, &o, 1000);
	assert_int_equal(ivsock_offer_take_as(&t->rg, &o.t, 1, &ch, &cg, NULL), 0);
	assert_int_equal(ivsock_chan_accept(&t->rg, ch, cg, 0, &A1, &a), 0);
	c = &t->rg.channels[o.idx];
	c->block = t->rg.channels[other.idx].block;
	c->block_gen = t->rg.channels[other.idx].block_gen;
	assert_int_equal(ivsock_chan_close_view(&t->rg, &a, false), 0);
	assert_int_equal(ivsock_chan_close_view(&t->rg, &o.c, false), 1);
	assert_int_equal(ivsock_block_pool_used(&t->rg, 0), 1);
	assert_int_equal(ivsock_chan_state(&t->rg, other.idx, other.gen), IVSOCK_CHAN_CONNECTED);
	/* the other channel was neither closed nor freed */
	assert_int_equal(ivsock_ring_write(&other.c.tx, "ok", 2, false), 2);
	assert_int_equal(ivsock_ring_read(&va.rx, buf, sizeof(buf)), 2);
	assert_int_equal(ivsock_ring_write(&va.tx, "yes", 3, false), 3);
	assert_int_equal(ivsock_ring_read(&other.c.rx, buf, sizeof(buf)), 3);
}

/* The acceptor's identity as the connector learns it must be the VM the
 * connection was meant for. */
static void test_learn_peer_checks_vm(void **state)
{
	struct test_region *t = *state;
	struct ivsock_chan_view v;
	struct offered o;

	offer(t, &o, 1000);
	assert_int_equal(ivsock_chan_accept(&t->rg, o.idx, o.gen, 0, &A1, &v), 0);
	t->rg.channels[o.idx].end[1].vm_index = 2;
	assert_int_equal(ivsock_chan_learn_peer(&t->rg, &o.c), -EPROTO);
	t->rg.channels[o.idx].end[1].vm_index = 1;
	assert_int_equal(ivsock_chan_learn_peer(&t->rg, &o.c), 0);
}

/* A release by a hostile "owner" whose forged references point into a third
 * VM's partition frees nothing there. */
static void test_release_forged_refs(void **state)
{
	struct test_region *t = *state;
	struct offered o;
	uint32_t foreign, fg;

	offer(t, &o, 1000);
	assert_int_equal(ivsock_block_alloc(&t->rg, 2, 0, 9, &foreign, &fg), 0);
	t->rg.channels[o.idx].block = foreign;
	t->rg.channels[o.idx].block_gen = fg;
	assert_int_equal(ivsock_chan_release_owner(&t->rg, 0, 1, NULL, NULL), 1);
	assert_int_equal(ivsock_block_pool_used(&t->rg, 2), 1);
	/* our own block, no longer named by the forged slot, is released by owner */
	assert_int_equal(ivsock_block_pool_used(&t->rg, 0), 0);
	assert_int_equal(ivsock_chan_state(&t->rg, o.idx, o.gen), 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_offer_theft),
		T(test_take_needs_address_and_listener),
		T(test_forged_refs_at_accept),
		T(test_close_uses_validated_refs),
		T(test_learn_peer_checks_vm),
		T(test_release_forged_refs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
