// SPDX-License-Identifier: MIT
/*
 * Cleanup never waits and leaks nothing (protocol/src/channel.c):
 *  - bulk release over many channels whose acceptor is stuck in ACCEPTING
 *    (stopped, or killed right there) does a bounded amount of work, counted
 *    in slot reads, not in time; and everything is freed once the acceptor
 *    finishes or dies;
 *  - a process killed at every step of open / offer / accept / close, then
 *    released by owner (its agent) or by VM (ivsockd), leaves zero channel
 *    slots, offers and blocks behind, whatever the other side does after.
 * This file compiles channel.c itself with a slot-read counter; the
 * library's build has no counter.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

static unsigned long slot_reads;
#define IVSOCK_SLOT_READ_HOOK() (slot_reads++)

#include "../../protocol/src/channel.c"

#include "ivsock/offer.h"
#include "testutil.h"

static const struct ivsock_end_id C0 = { .vm = 0, .client = 1, .peer_id = 10, .vector = 1 };
static const struct ivsock_end_id A1 = { .vm = 1, .client = 5, .peer_id = 11, .vector = 3 };

#define NCHAN 128U

static int setup(void **state)
{
	struct test_region *t = calloc(1, sizeof(*t));
	struct ivsock_region_params p;

	test_params_small(&p);
	p.channel_cap = NCHAN;
	p.vm_cap = 2;
	assert_int_equal(test_region_map(t, 1U << 23, &p), 0);
	assert_true(t->rg.class[0].blocks_per_vm >= NCHAN);
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

static void assert_nothing_left(struct test_region *t)
{
	uint32_t i;

	for (i = 0; i < t->rg.channel_cap; i++)
		assert_int_equal(ivsock_slot_get(&t->rg.channels[i].slot).state, IVSOCK_SLOT_FREE);
	for (i = 0; i < t->rg.offer_cap; i++)
		assert_int_equal(ivsock_slot_get(&t->rg.offers[i].slot).state, IVSOCK_SLOT_FREE);
	for (i = 0; i < t->rg.vm_cap; i++)
		assert_int_equal(ivsock_block_pool_used(&t->rg, (uint8_t)i), 0);
}

/* The acceptor's steps of ivsock_chan_accept(), so that a test can stop
 * (or kill) it between them, exactly as docs/layout.md describes them. */
static int acc_win(struct test_region *t, uint32_t idx, uint32_t gen, const struct ivsock_end_id *me)
{
	struct ivsock_channel *c = &t->rg.channels[idx];
	uint64_t old = ivsock_load_acquire(&c->slot);
	struct ivsock_slot_val v = ivsock_slot_unpack(old);

	if (v.gen != gen || v.state != IVSOCK_CHAN_OFFERED)
		return -ESTALE;
	v.state = IVSOCK_CHAN_ACCEPTING;
	v.vm = me->vm;
	v.client = me->client;
	return ivsock_cas(&c->slot, &old, ivsock_slot_pack(v)) ? 0 : -ESTALE;
}

static void acc_write_end(struct test_region *t, uint32_t idx, const struct ivsock_end_id *me)
{
	struct ivsock_channel *c = &t->rg.channels[idx];
	uint32_t rs = 0;
	void *mem = block_check(&t->rg, ivsock_ld32(&c->block), ivsock_ld32(&c->block_gen), 0, -1, &rs);

	if (mem)
		ctl_write(ivsock_block_ctl(mem, rs, 1), me);
	end_write(&c->end[1], me, IVSOCK_END_ATTACHED);
}

static int acc_publish(struct test_region *t, uint32_t idx, uint32_t gen, uint8_t cvm,
		       uint16_t ccl)
{
	struct ivsock_channel *c = &t->rg.channels[idx];
	uint64_t old = ivsock_load_acquire(&c->slot);
	struct ivsock_slot_val v = ivsock_slot_unpack(old);

	if (v.gen != gen || v.state != IVSOCK_CHAN_ACCEPTING)
		return -ESTALE;
	v.state = IVSOCK_CHAN_CONNECTED;
	v.vm = cvm;
	v.client = ccl;
	return ivsock_cas(&c->slot, &old, ivsock_slot_pack(v)) ? 0 : -ESTALE;
}

/* Finding: close_end spun 100,000 pauses per ACCEPTING channel. */
static void test_bulk_release_accepting_is_bounded(void **state)
{
	struct test_region *t = *state;
	uint32_t idx[NCHAN], gen[NCHAN], i;
	unsigned long before;
	int n;

	for (i = 0; i < NCHAN; i++) {
		struct ivsock_tuple tp = tup((uint16_t)(1000 + i));

		assert_int_equal(ivsock_chan_open(&t->rg, &C0, &tp, ivsock_chan_dst_vm(&t->rg, C0.vm, &tp), t->rg.default_class, &idx[i], &gen[i]), 0);
		assert_int_equal(acc_win(t, idx[i], gen[i], &A1), 0);
		if (i % 2)
			acc_write_end(t, idx[i], &A1); /* stopped after writing its end */
	}
	/* the connector process is killed: its agent releases it */
	before = slot_reads;
	n = ivsock_chan_release_owner(&t->rg, 0, 1, NULL, NULL);
	assert_int_equal(n, (int)NCHAN);
	/* a scan, a look before and after each close, the block scan */
	assert_true(slot_reads - before <= 8UL * NCHAN + t->rg.class[0].blocks_per_vm);
	/* nothing was freed under the acceptors */
	for (i = 0; i < NCHAN; i++)
		assert_int_equal(ivsock_chan_state(&t->rg, idx[i], gen[i]), IVSOCK_CHAN_ACCEPTING);
	assert_int_equal(ivsock_block_pool_used(&t->rg, 0), NCHAN);

	/* half the acceptors finish and close; the others are killed */
	for (i = 0; i < NCHAN; i += 2) {
		acc_write_end(t, idx[i], &A1);
		assert_int_equal(acc_publish(t, idx[i], gen[i], 0, 1), 0);
		assert_int_equal(ivsock_chan_close(&t->rg, idx[i], gen[i], 1, false), 1);
	}
	before = slot_reads;
	n = ivsock_chan_release_owner(&t->rg, 1, 5, NULL, NULL);
	assert_int_equal(n, (int)NCHAN / 2);
	assert_true(slot_reads - before <= 8UL * NCHAN + t->rg.class[0].blocks_per_vm);
	assert_nothing_left(t);
}

/* The other order: the acceptor dies in ACCEPTING first; the live
 * connector finds ABANDONED (take its bytes back, TCP) and frees. */
static void test_acceptor_dies_in_accepting(void **state)
{
	struct test_region *t = *state;
	struct ivsock_tuple tp = tup(7);
	struct ivsock_chan_view c;
	uint32_t idx, gen;
	char buf[8];

	assert_int_equal(ivsock_chan_open(&t->rg, &C0, &tp, ivsock_chan_dst_vm(&t->rg, C0.vm, &tp), t->rg.default_class, &idx, &gen), 0);
	assert_int_equal(ivsock_chan_view_connector(&t->rg, idx, gen, &c), 0);
	assert_int_equal(ivsock_ring_write(&c.tx, "early", 5, false), 5);
	assert_int_equal(acc_win(t, idx, gen, &A1), 0);
	assert_int_equal(ivsock_chan_learn_peer(&t->rg, &c), -EAGAIN);
	assert_int_equal(ivsock_chan_abandon(&t->rg, idx, gen), -ESTALE);
	assert_int_equal(ivsock_chan_release_owner(&t->rg, 1, 5, NULL, NULL), 1);
	assert_int_equal(ivsock_chan_state(&t->rg, idx, gen), IVSOCK_CHAN_ABANDONED);
	assert_int_equal(ivsock_ring_take_back(&c.tx, buf, sizeof(buf)), 5);
	assert_int_equal(ivsock_chan_close_view(&t->rg, &c, false), 1);
	assert_nothing_left(t);
}

/*
 * Death at every step. The connector's steps are those of ivsock_chan_open
 * and the shim's offer; the acceptor's those of ivsock_offer_take and
 * ivsock_chan_accept; then each side closes. `die_c` / `die_a` is the step
 * before which that side is killed (99: not killed); a killed side is then
 * released by owner (its agent) or by VM (ivsockd); a live side finishes
 * what it can and closes, as the shim does.
 */
enum { C_BLOCK, C_CLAIM, C_FIELDS, C_OFFERED, C_POST, C_CLOSE, C_DONE };
enum { A_TAKE, A_WIN, A_END, A_PUBLISH, A_CLOSE, A_DONE };

struct conn {
	uint32_t b1, g1, idx, gen, oidx, ogen;
	int step;
	bool have_b1, have_slot, posted, offered;
};

struct acc {
	uint32_t chan, cgen;
	int step;
	bool took, won;
};

static void conn_step(struct test_region *t, struct conn *c, const struct ivsock_tuple *tp)
{
	struct ivsock_channel *ch;
	int rc;

	switch (c->step) {
	case C_BLOCK:
		assert_int_equal(ivsock_block_alloc(&t->rg, 0, 0, 1, &c->b1, &c->g1), 0);
		c->have_b1 = true;
		break;
	case C_CLAIM:
		for (c->idx = 0; c->idx < t->rg.channel_cap; c->idx++) {
			c->gen = ivsock_slot_claim(&t->rg.channels[c->idx].slot, 0, 1);
			if (c->gen)
				break;
		}
		assert_true(c->gen != 0);
		c->have_slot = true;
		break;
	case C_FIELDS:
		ch = &t->rg.channels[c->idx];
		ivsock_st32(&ch->block, c->b1);
		ivsock_st32(&ch->block_gen, c->g1);
		ctl_write(ivsock_block_ctl(ivsock_region_block_mem(&t->rg, c->b1),
					   t->rg.class[0].ring_size, 0), &C0);
		ivsock_copy_to_shared(&ch->tuple, tp, sizeof(*tp));
		ivsock_st32(&ch->dst_vm, 1);
		end_clear(&ch->end[1]);
		end_write(&ch->end[0], &C0, IVSOCK_END_ATTACHED);
		break;
	case C_OFFERED:
		assert_int_equal(ivsock_slot_move(&t->rg.channels[c->idx].slot, c->gen,
						  IVSOCK_SLOT_INIT, IVSOCK_CHAN_OFFERED), 0);
		c->offered = true;
		break;
	case C_POST:
		rc = ivsock_offer_post(&t->rg, 0, 1, tp, c->idx, c->gen, &c->ogen);
		assert_true(rc >= 0);
		c->oidx = (uint32_t)rc;
		c->posted = true;
		break;
	case C_CLOSE:
		if (c->posted)
			ivsock_offer_cancel(&t->rg, c->oidx, c->ogen);
		ivsock_chan_close(&t->rg, c->idx, c->gen, 0, false);
		break;
	}
	c->step++;
}

/* A live connector that has not finished opening gives back what it holds
 * (the error path of ivsock_chan_open), then closes what it has. */
static void conn_finish(struct test_region *t, struct conn *c, const struct ivsock_tuple *tp)
{
	if (c->step <= C_FIELDS) {
		if (c->have_slot) {
			ivsock_block_free(&t->rg, c->b1, c->g1);
			ivsock_slot_release(&t->rg.channels[c->idx].slot, c->gen);
		} else if (c->have_b1) {
			ivsock_block_free(&t->rg, c->b1, c->g1);
		}
		c->step = C_DONE;
		return;
	}
	while (c->step < C_DONE)
		conn_step(t, c, tp);
}

static void acc_step(struct test_region *t, struct acc *a, const struct ivsock_tuple *tp)
{
	uint8_t owner;

	switch (a->step) {
	case A_TAKE:
		a->took = ivsock_offer_take(&t->rg, tp, &a->chan, &a->cgen, &owner) == 0;
		break;
	case A_WIN:
		a->won = a->took && acc_win(t, a->chan, a->cgen, &A1) == 0;
		break;
	case A_END:
		if (a->won)
			acc_write_end(t, a->chan, &A1);
		break;
	case A_PUBLISH:
		if (a->won)
			assert_int_equal(acc_publish(t, a->chan, a->cgen, 0, 1), 0);
		break;
	case A_CLOSE:
		if (a->won)
			ivsock_chan_close(&t->rg, a->chan, a->cgen, 1, false);
		else if (a->took)
			ivsock_chan_abandon(&t->rg, a->chan, a->cgen);
		break;
	}
	a->step++;
}

static void die(struct test_region *t, int who, bool by_vm)
{
	if (by_vm)
		ivsock_chan_release_vm(&t->rg, (uint8_t)who, NULL, NULL);
	else
		ivsock_chan_release_owner(&t->rg, (uint8_t)who, who ? 5 : 1, NULL, NULL);
	if (by_vm)
		ivsock_offer_release_vm(&t->rg, (uint8_t)who);
	else
		ivsock_offer_release_owner(&t->rg, (uint8_t)who, who ? 5 : 1);
}

static void test_death_at_every_step(void **state)
{
	struct test_region *t = *state;
	struct ivsock_tuple tp = tup(4242);
	int die_c, die_a, by_vm, order, runs = 0;

	for (by_vm = 0; by_vm < 2; by_vm++)
	for (order = 0; order < 2; order++)
	for (die_c = 0; die_c <= C_DONE; die_c++)
	for (die_a = 0; die_a <= A_DONE; die_a++) {
		struct conn c = { 0 };
		struct acc a = { 0 };
		bool c_dead = false, a_dead = false;

		/* the connector opens and posts, the acceptor takes and
		 * accepts, then (order) one closes first */
		while (!c_dead && c.step < C_CLOSE) {
			if (c.step == die_c) {
				c_dead = true;
				break;
			}
			conn_step(t, &c, &tp);
		}
		while (!a_dead && a.step < A_CLOSE) {
			if (a.step == die_a) {
				a_dead = true;
				break;
			}
			acc_step(t, &a, &tp);
		}
		if (order == 0 && !c_dead && c.step == C_CLOSE) {
			if (die_c == C_CLOSE)
				c_dead = true;
			else
				conn_step(t, &c, &tp);
		}
		if (!a_dead && a.step == A_CLOSE) {
			if (die_a == A_CLOSE)
				a_dead = true;
			else
				acc_step(t, &a, &tp);
		}
		if (order == 1 && !c_dead && c.step == C_CLOSE) {
			if (die_c == C_CLOSE)
				c_dead = true;
			else
				conn_step(t, &c, &tp);
		}
		if (c_dead)
			die(t, 0, by_vm);
		if (a_dead)
			die(t, 1, by_vm);
		/* survivors finish what they were doing and close */
		if (!c_dead)
			conn_finish(t, &c, &tp);
		if (!a_dead) {
			if (a.step < A_WIN)
				a.step = A_DONE; /* no offer to take any more */
			while (a.step < A_DONE)
				acc_step(t, &a, &tp);
		}
		assert_nothing_left(t);
		runs++;
	}
	assert_int_equal(runs, 2 * 2 * (C_DONE + 1) * (A_DONE + 1));
}

static unsigned rung;
static void count_ring(void *arg, uint32_t peer, uint32_t vector)
{
	(void)arg;
	if (peer == C0.peer_id && vector == C0.vector)
		rung++;
}

/* A connection on TCP (state TCP, no block): listed, promotable, and freed
 * by its connector's close, its owner's release, its VM's release or
 * reclaim; nothing else may touch it. */
static void test_tcp_entry(void **state)
{
	struct test_region *t = *state;
	struct ivsock_tuple tp = tup(5151);
	uint32_t idx, gen, b, bg;

	for (int how = 0; how < 4; how++) {
		assert_int_equal(ivsock_chan_track(&t->rg, &C0, &tp, 1, &idx, &gen), 0);
		assert_int_equal(ivsock_chan_state(&t->rg, idx, gen), IVSOCK_CHAN_TCP);
		assert_null(ivsock_chan_end_ctl(&t->rg, idx, 0, NULL, NULL));
		assert_int_equal(ivsock_block_pool_used(&t->rg, 0), 0);
		/* a ring's requests do not apply; a promotion request does */
		assert_int_equal(ivsock_chan_demote(&t->rg, idx, gen, NULL, NULL), -EBUSY);
		assert_int_equal(ivsock_chan_resize(&t->rg, idx, gen, 4096, NULL, NULL), -EBUSY);
		rung = 0;
		assert_int_equal(ivsock_chan_promote_req(&t->rg, idx, gen, 65536, count_ring, NULL), 0);
		assert_int_equal(ivsock_chan_promote_req(&t->rg, idx, gen + 1, 0, count_ring, NULL), -ESTALE);
		assert_int_equal(rung, 1);
		assert_int_equal(atomic_load(&t->rg.channels[idx].promote_req), 1);
		assert_int_equal(atomic_load(&t->rg.channels[idx].resize_to), 65536);
		/* the acceptor side has nothing to close; another owner's
		 * release leaves it */
		assert_int_equal(ivsock_chan_close(&t->rg, idx, gen, IVSOCK_SIDE_ACCEPTOR, false), -ESTALE);
		ivsock_chan_release_owner(&t->rg, 0, 9, NULL, NULL);
		ivsock_chan_release_vm(&t->rg, 1, NULL, NULL);
		assert_int_equal(ivsock_chan_state(&t->rg, idx, gen), IVSOCK_CHAN_TCP);
		/* it names no block: the owner's stray blocks still go */
		assert_int_equal(ivsock_block_alloc(&t->rg, 0, 0, C0.client, &b, &bg), 0);
		assert_int_equal(ivsock_block_release_unreferenced(&t->rg, 0, C0.client), 1);
		switch (how) {
		case 0:
			assert_int_equal(ivsock_chan_close(&t->rg, idx, gen, IVSOCK_SIDE_CONNECTOR, false), 1);
			break;
		case 1:
			assert_int_equal(ivsock_chan_release_owner(&t->rg, 0, C0.client, NULL, NULL), 1);
			break;
		case 2:
			assert_int_equal(ivsock_chan_release_vm(&t->rg, 0, NULL, NULL), 1);
			break;
		default:
			assert_true(ivsock_chan_reclaim_vm(&t->rg, 0, NULL, NULL) >= 1);
			break;
		}
		assert_int_equal(ivsock_chan_state(&t->rg, idx, gen), 0);
		assert_int_equal(ivsock_chan_promote_req(&t->rg, idx, gen, 0, NULL, NULL), -ESTALE);
		assert_nothing_left(t);
	}
	/* a connected channel is not a TCP entry */
	{
		struct ivsock_chan_view v;

		assert_int_equal(ivsock_chan_open(&t->rg, &C0, &tp, 1, 0, &idx, &gen), 0);
		assert_int_equal(ivsock_chan_accept(&t->rg, idx, gen, 0, &A1, &v), 0);
		assert_int_equal(ivsock_chan_promote_req(&t->rg, idx, gen, 0, NULL, NULL), -EBUSY);
		/* a process that dies while its channel is DEMOTED is released
		 * like one on a connected channel */
		assert_int_equal(ivsock_chan_demote(&t->rg, idx, gen, NULL, NULL), 0);
		assert_int_equal(ivsock_chan_release_owner(&t->rg, 0, C0.client, NULL, NULL), 1);
		assert_true(atomic_load(&t->rg.channels[idx].end[0].flags) & IVSOCK_END_DEAD);
		assert_int_equal(ivsock_chan_close_view(&t->rg, &v, false), 1);
		assert_nothing_left(t);
	}
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_bulk_release_accepting_is_bounded),
		T(test_acceptor_dies_in_accepting),
		T(test_death_at_every_step),
		T(test_tcp_entry),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
