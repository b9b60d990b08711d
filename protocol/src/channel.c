// SPDX-License-Identifier: MIT
/* Channel table: open (connector), accept (acceptor), abandon, close and
 * bulk release; each move is one CAS on the slot word. */
#include <errno.h>
#include <string.h>

#include "ivsock/channel.h"

void (*ivsock_chan_accepting_hook)(uint32_t idx);

static void end_write(struct ivsock_chan_end *e, const struct ivsock_end_id *id,
		      uint32_t flags)
{
	e->vm_index = id->vm;
	e->peer_id = id->peer_id;
	e->vector = id->vector;
	e->client = id->client;
	ivsock_store_relaxed(&e->tx_bytes, 0);
	ivsock_store_relaxed(&e->rx_bytes, 0);
	ivsock_store_relaxed(&e->holders, 1);
	ivsock_store_release(&e->flags, flags);
}

int ivsock_chan_open(struct ivsock_region *rg, const struct ivsock_end_id *me,
		     const struct ivsock_tuple *t, uint32_t *idx, uint32_t *gen)
{
	uint32_t i, g, r1, g1, r2, g2;
	int rc;

	if (me->vm >= rg->vm_cap)
		return -EINVAL;
	rc = ivsock_ring_alloc(rg, me->vm, me->client, &r1, &g1);
	if (rc < 0)
		return rc;
	rc = ivsock_ring_alloc(rg, me->vm, me->client, &r2, &g2);
	if (rc < 0)
		goto err_free_r1;
	for (i = 0; i < rg->channel_cap; i++) {
		struct ivsock_channel *c = &rg->channels[i];

		g = ivsock_slot_claim(&c->slot, me->vm, me->client);
		if (!g)
			continue;
		c->ring_c2s = r1;
		c->ring_c2s_gen = g1;
		c->ring_s2c = r2;
		c->ring_s2c_gen = g2;
		c->tuple = *t;
		end_write(&c->end[0], me, IVSOCK_END_ATTACHED);
		memset(&c->end[1], 0, sizeof(c->end[1]));
		if (ivsock_slot_move(&c->slot, g, IVSOCK_SLOT_INIT, IVSOCK_CHAN_OFFERED) < 0) {
			rc = -EAGAIN;
			goto err_free_r2;
		}
		*idx = i;
		*gen = g;
		return 0;
	}
	rc = -ENOSPC;
err_free_r2:
	ivsock_ring_free(rg, r2, g2);
err_free_r1:
	ivsock_ring_free(rg, r1, g1);
	return rc;
}

/* Validate a ring reference read from the channel and attach a view. */
static int attach_ring(struct ivsock_region *rg, uint32_t ridx, uint32_t rgen,
		       uint8_t owner_vm, struct ivsock_ring *r, enum ivsock_ring_role role)
{
	void *mem = ivsock_region_ring_mem(rg, ridx);
	struct ivsock_slot_val v;

	if (!mem || ivsock_region_ring_vm(rg, ridx) != owner_vm)
		return -EPROTO;
	v = ivsock_slot_get(&rg->ringslots[ridx]);
	if (v.gen != rgen || v.state == IVSOCK_SLOT_FREE)
		return -ESTALE;
	return ivsock_ring_attach(r, mem, rg->ring_size, role);
}

static int read_end(const struct ivsock_chan_end *e, struct ivsock_end_id *id,
		    uint32_t vm_cap)
{
	uint32_t vm = e->vm_index, peer = e->peer_id, vec = e->vector, cl = e->client;

	if (vm >= vm_cap || peer > 65535 || vec > 65535 || cl > 65535)
		return -EPROTO;
	id->vm = (uint8_t)vm;
	id->peer_id = peer;
	id->vector = vec;
	id->client = (uint16_t)cl;
	return 0;
}

int ivsock_chan_accept(struct ivsock_region *rg, uint32_t idx, uint32_t gen,
		       uint8_t expect_vm, const struct ivsock_end_id *me,
		       struct ivsock_chan_view *view)
{
	struct ivsock_channel *c;
	struct ivsock_slot_val v;
	uint32_t r1, g1, r2, g2;
	int rc;

	if (idx >= rg->channel_cap)
		return -EPROTO;
	c = &rg->channels[idx];
	v = ivsock_slot_get(&c->slot);
	if (v.gen != gen || v.state != IVSOCK_CHAN_OFFERED)
		return -ESTALE;
	if (v.vm != expect_vm)
		return -EPROTO;
	memset(view, 0, sizeof(*view));
	view->idx = idx;
	view->gen = gen;
	view->side = IVSOCK_SIDE_ACCEPTOR;
	r1 = c->ring_c2s;
	g1 = c->ring_c2s_gen;
	r2 = c->ring_s2c;
	g2 = c->ring_s2c_gen;
	if (r1 == r2)
		return -EPROTO;
	rc = read_end(&c->end[0], &view->peer, rg->vm_cap);
	if (rc < 0)
		return rc;
	if (view->peer.vm != v.vm)
		return -EPROTO;
	rc = attach_ring(rg, r1, g1, v.vm, &view->rx, IVSOCK_RING_CONSUMER);
	if (rc < 0)
		return rc;
	rc = attach_ring(rg, r2, g2, v.vm, &view->tx, IVSOCK_RING_PRODUCER);
	if (rc < 0)
		return rc;
	/* Win the race against the connector's abandon first, and only then
	 * write end[1]: a loser must never write into a slot that may have
	 * been freed and reused meanwhile. */
	if (ivsock_slot_move(&c->slot, gen, IVSOCK_CHAN_OFFERED, IVSOCK_CHAN_ACCEPTING) < 0)
		return -ESTALE;
	if (__builtin_expect(ivsock_chan_accepting_hook != NULL, 0))
		ivsock_chan_accepting_hook(idx);
	end_write(&c->end[1], me, IVSOCK_END_ATTACHED);
	/* Release: end[1] is visible to the connector once it sees CONNECTED. */
	if (ivsock_slot_move(&c->slot, gen, IVSOCK_CHAN_ACCEPTING, IVSOCK_CHAN_CONNECTED) < 0)
		return -EPROTO; /* someone else moved our channel: corrupt peer */
	return 0;
}

int ivsock_chan_view_connector(struct ivsock_region *rg, uint32_t idx, uint32_t gen,
			       struct ivsock_chan_view *view)
{
	struct ivsock_channel *c;
	struct ivsock_slot_val v;
	int rc;

	if (idx >= rg->channel_cap)
		return -EINVAL;
	c = &rg->channels[idx];
	v = ivsock_slot_get(&c->slot);
	if (v.gen != gen || v.state == IVSOCK_SLOT_FREE)
		return -ESTALE;
	memset(view, 0, sizeof(*view));
	view->idx = idx;
	view->gen = gen;
	view->side = IVSOCK_SIDE_CONNECTOR;
	rc = attach_ring(rg, c->ring_c2s, c->ring_c2s_gen, v.vm, &view->tx, IVSOCK_RING_PRODUCER);
	if (rc < 0)
		return rc;
	rc = attach_ring(rg, c->ring_s2c, c->ring_s2c_gen, v.vm, &view->rx, IVSOCK_RING_CONSUMER);
	if (rc < 0)
		return rc;
	view->peer.vm = IVSOCK_VM_NONE;
	return 0;
}

int ivsock_chan_learn_peer(struct ivsock_region *rg, struct ivsock_chan_view *view)
{
	struct ivsock_channel *c;
	struct ivsock_slot_val v;

	if (view->idx >= rg->channel_cap)
		return -EINVAL;
	c = &rg->channels[view->idx];
	v = ivsock_slot_get(&c->slot);
	if (v.gen != view->gen)
		return -ESTALE;
	if (v.state == IVSOCK_CHAN_OFFERED || v.state == IVSOCK_CHAN_ACCEPTING)
		return -EAGAIN;
	if (v.state != IVSOCK_CHAN_CONNECTED && v.state != IVSOCK_CHAN_REVOKED)
		return -ESTALE;
	/* The acquire in ivsock_slot_get() pairs with the release of the
	 * OFFERED -> CONNECTED move: end[1] is complete. */
	return read_end(&c->end[1], &view->peer, rg->vm_cap);
}

int ivsock_chan_abandon(struct ivsock_region *rg, uint32_t idx, uint32_t gen)
{
	if (idx >= rg->channel_cap)
		return -EINVAL;
	return ivsock_slot_move(&rg->channels[idx].slot, gen, IVSOCK_CHAN_OFFERED,
				IVSOCK_CHAN_ABANDONED);
}

uint8_t ivsock_chan_state(const struct ivsock_region *rg, uint32_t idx, uint32_t gen)
{
	struct ivsock_slot_val v;

	if (idx >= rg->channel_cap)
		return 0;
	v = ivsock_slot_get(&rg->channels[idx].slot);
	return v.gen == gen ? v.state : 0;
}

uint32_t ivsock_chan_peer_flags(const struct ivsock_region *rg, const struct ivsock_chan_view *v)
{
	if (v->idx >= rg->channel_cap)
		return IVSOCK_END_CLOSED | IVSOCK_END_DEAD;
	return ivsock_load_acquire(&rg->channels[v->idx].end[!v->side].flags);
}

/* Free the rings and the slot; only the CAS winner frees the rings, and
 * only rings of the owner's partition (the references are shared memory:
 * a corrupt one must not free another VM's ring). */
static int chan_free(struct ivsock_region *rg, struct ivsock_channel *c, uint32_t gen,
		     uint8_t owner_vm)
{
	uint32_t r1 = c->ring_c2s, g1 = c->ring_c2s_gen;
	uint32_t r2 = c->ring_s2c, g2 = c->ring_s2c_gen;

	if (ivsock_slot_release(&c->slot, gen) < 0)
		return 0;
	if (ivsock_region_ring_vm(rg, r1) == owner_vm)
		ivsock_ring_free(rg, r1, g1);
	if (ivsock_region_ring_vm(rg, r2) == owner_vm)
		ivsock_ring_free(rg, r2, g2);
	return 1;
}

/* Mark end `side` closed, with its rings; free if the other end is done. */
static int close_end(struct ivsock_region *rg, uint32_t idx, uint32_t gen,
		     int side, bool reset, bool dead)
{
	struct ivsock_channel *c = &rg->channels[idx];
	struct ivsock_slot_val v = ivsock_slot_get(&c->slot);
	struct ivsock_ring tx, rx;
	uint32_t tx_idx, tx_gen, rx_idx, rx_gen, f, other;
	bool other_done;

	if (v.gen != gen || v.state == IVSOCK_SLOT_FREE || v.state == IVSOCK_SLOT_INIT)
		return -ESTALE;
	if (side == IVSOCK_SIDE_CONNECTOR && v.state == IVSOCK_CHAN_OFFERED &&
	    ivsock_chan_abandon(rg, idx, gen) == 0)
		return chan_free(rg, c, gen, v.vm);
	if (v.state == IVSOCK_CHAN_ABANDONED)
		return chan_free(rg, c, gen, v.vm);
	if (v.state == IVSOCK_CHAN_ACCEPTING) {
		/* The acceptor is between its two CASes (a few stores): let it
		 * finish so that its end is complete before we decide who frees.
		 * Bounded, in case it died right there. */
		int spins;

		for (spins = 0; spins < 100000; spins++) {
			v = ivsock_slot_get(&c->slot);
			if (v.gen != gen || v.state != IVSOCK_CHAN_ACCEPTING)
				break;
			ivsock_cpu_relax();
		}
		if (v.gen != gen || v.state == IVSOCK_SLOT_FREE)
			return -ESTALE;
	}

	tx_idx = side == IVSOCK_SIDE_CONNECTOR ? c->ring_c2s : c->ring_s2c;
	tx_gen = side == IVSOCK_SIDE_CONNECTOR ? c->ring_c2s_gen : c->ring_s2c_gen;
	rx_idx = side == IVSOCK_SIDE_CONNECTOR ? c->ring_s2c : c->ring_c2s;
	rx_gen = side == IVSOCK_SIDE_CONNECTOR ? c->ring_s2c_gen : c->ring_c2s_gen;
	if (attach_ring(rg, tx_idx, tx_gen, v.vm, &tx, IVSOCK_RING_PRODUCER) == 0)
		ivsock_ring_close_write(&tx, reset);
	if (attach_ring(rg, rx_idx, rx_gen, v.vm, &rx, IVSOCK_RING_CONSUMER) == 0)
		ivsock_ring_close_read(&rx);

	f = ivsock_load_relaxed(&c->end[side].flags);
	f |= IVSOCK_END_CLOSED | (dead ? IVSOCK_END_DEAD : 0);
	ivsock_store_release(&c->end[side].flags, f);
	/* Pairs with the same fence on the other end: at least one of us
	 * sees both ends closed. */
	ivsock_smp_mb();
	other = ivsock_load_acquire(&c->end[!side].flags);
	other_done = (other & IVSOCK_END_CLOSED) || !(other & IVSOCK_END_ATTACHED);
	if (other_done)
		return chan_free(rg, c, gen, v.vm);
	return 0;
}

int ivsock_chan_close(struct ivsock_region *rg, uint32_t idx, uint32_t gen,
		      int side, bool reset)
{
	if (idx >= rg->channel_cap || (side != 0 && side != 1))
		return -EINVAL;
	return close_end(rg, idx, gen, side, reset, false);
}

void ivsock_chan_count(struct ivsock_region *rg, const struct ivsock_chan_view *v,
		       uint64_t tx, uint64_t rx)
{
	struct ivsock_chan_end *e;

	if (v->idx >= rg->channel_cap)
		return;
	e = &rg->channels[v->idx].end[v->side];
	if (tx)
		ivsock_store_relaxed(&e->tx_bytes, ivsock_load_relaxed(&e->tx_bytes) + tx);
	if (rx)
		ivsock_store_relaxed(&e->rx_bytes, ivsock_load_relaxed(&e->rx_bytes) + rx);
}

/* Close every end matching (vm, client); ring the surviving ends. Both ends
 * of a channel may match (a connection inside one VM or one process). */
static int release_matching(struct ivsock_region *rg, uint8_t vm, int client,
			    ivsock_ring_fn ring, void *arg)
{
	uint32_t i;
	int n = 0;

	for (i = 0; i < rg->channel_cap; i++) {
		struct ivsock_channel *c = &rg->channels[i];
		struct ivsock_slot_val v = ivsock_slot_get(&c->slot);
		struct ivsock_end_id id[2];
		bool match[2] = { false, false };
		int side, closed = 0;

		if (v.state < IVSOCK_CHAN_OFFERED)
			continue;
		for (side = 0; side < 2; side++) {
			uint32_t f = ivsock_load_acquire(&c->end[side].flags);

			if (!(f & IVSOCK_END_ATTACHED) || (f & IVSOCK_END_CLOSED))
				continue;
			if (read_end(&c->end[side], &id[side], rg->vm_cap) < 0)
				continue;
			match[side] = id[side].vm == vm &&
				      (client < 0 || id[side].client == (uint16_t)client);
		}
		for (side = 0; side < 2; side++) {
			if (!match[side])
				continue;
			if (close_end(rg, i, v.gen, side, true, true) >= 0)
				closed++;
		}
		if (!closed)
			continue;
		n++;
		for (side = 0; side < 2; side++) {
			uint32_t f;

			if (match[side] || !ring)
				continue;
			f = ivsock_load_acquire(&c->end[side].flags);
			if ((f & IVSOCK_END_ATTACHED) && !(f & IVSOCK_END_CLOSED) &&
			    ivsock_slot_get(&c->slot).gen == v.gen &&
			    read_end(&c->end[side], &id[side], rg->vm_cap) == 0)
				ring(arg, id[side].peer_id, id[side].vector);
		}
	}
	return n;
}

int ivsock_chan_release_owner(struct ivsock_region *rg, uint8_t vm, uint16_t client,
			      ivsock_ring_fn ring, void *arg)
{
	return release_matching(rg, vm, client, ring, arg);
}

int ivsock_chan_release_vm(struct ivsock_region *rg, uint8_t vm,
			   ivsock_ring_fn ring, void *arg)
{
	return release_matching(rg, vm, -1, ring, arg);
}

int ivsock_chan_reclaim_vm(struct ivsock_region *rg, uint8_t vm,
			   ivsock_ring_fn ring, void *arg)
{
	uint32_t i;
	int n = 0;

	for (i = 0; i < rg->channel_cap; i++) {
		struct ivsock_channel *c = &rg->channels[i];
		struct ivsock_slot_val v = ivsock_slot_get(&c->slot);
		struct ivsock_end_id other;
		int side;

		if (v.state < IVSOCK_CHAN_OFFERED || v.vm != vm)
			continue;
		if (v.state != IVSOCK_CHAN_REVOKED &&
		    ivsock_slot_move(&c->slot, v.gen, v.state, IVSOCK_CHAN_REVOKED) < 0)
			continue;
		for (side = 0; side < 2 && ring; side++) {
			uint32_t f = ivsock_load_acquire(&c->end[side].flags);

			if ((f & IVSOCK_END_ATTACHED) && !(f & IVSOCK_END_CLOSED) &&
			    read_end(&c->end[side], &other, rg->vm_cap) == 0 &&
			    other.vm != vm)
				ring(arg, other.peer_id, other.vector);
		}
		if (chan_free(rg, c, v.gen, v.vm) == 1)
			n++;
	}
	return n;
}

uint32_t ivsock_chan_count_vm(const struct ivsock_region *rg, uint8_t vm)
{
	uint32_t i, n = 0;

	for (i = 0; i < rg->channel_cap; i++) {
		const struct ivsock_channel *c = &rg->channels[i];
		struct ivsock_slot_val v = ivsock_slot_get((ivsock_a64 *)&c->slot);

		if (v.state < IVSOCK_CHAN_OFFERED)
			continue;
		if (v.vm == vm || (c->end[1].vm_index == vm &&
				   (ivsock_load_acquire((ivsock_a32 *)&c->end[1].flags) &
				    IVSOCK_END_ATTACHED)))
			n++;
	}
	return n;
}
