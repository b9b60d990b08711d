// SPDX-License-Identifier: MIT
/* Channel table: open (connector), accept (acceptor), abandon, close and
 * bulk release; each move is one CAS on the slot word. Every field another
 * party may write is read once with an explicit atomic load into a private
 * copy and validated there; no path waits for another party. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ivsock/channel.h"
#include "ivsock/directory.h"

#define BLOCK_ACTIVE 2U /* block slot state after ivsock_block_alloc() */

/* Block reference of a channel and the partition it must lie in. */
struct chan_refs {
	uint32_t vm;               /* connector's VM == block partition */
	uint32_t block, block_gen;
	bool valid;
};

void (*ivsock_chan_accepting_hook)(uint32_t idx);

static void end_write(struct ivsock_chan_end *e, const struct ivsock_end_id *id,
		      uint32_t flags)
{
	ivsock_st32(&e->vm_index, (uint32_t)id->vm);
	ivsock_st32(&e->peer_id, id->peer_id);
	ivsock_st32(&e->vector, id->vector);
	ivsock_st32(&e->client, (uint32_t)id->client);
	ivsock_st32(&e->uid, id->uid);
	ivsock_store_release(&e->flags, flags);
}

static void end_clear(struct ivsock_chan_end *e)
{
	ivsock_st32(&e->vm_index, 0);
	ivsock_st32(&e->peer_id, 0);
	ivsock_st32(&e->vector, 0);
	ivsock_st32(&e->client, 0);
	ivsock_st32(&e->uid, 0);
	ivsock_store_relaxed(&e->flags, 0);
}

/* The end's words of its ctl page: doorbell address, one holder. */
static void ctl_write(struct ivsock_end_ctl *e, const struct ivsock_end_id *id)
{
	ivsock_st32(&e->peer_id, id->peer_id);
	ivsock_st32(&e->vector, id->vector);
	ivsock_store_relaxed(&e->tx_bytes, 0);
	ivsock_store_relaxed(&e->rx_bytes, 0);
	ivsock_store_release(&e->holders, 1);
}

static int read_end(const struct ivsock_chan_end *e, struct ivsock_end_id *id,
		    uint32_t vm_cap)
{
	uint32_t vm = ivsock_ld32(&e->vm_index), peer = ivsock_ld32(&e->peer_id);
	uint32_t vec = ivsock_ld32(&e->vector), cl = ivsock_ld32(&e->client);

	if (vm >= vm_cap || peer > 65535 || vec > 65535 || cl > 65535)
		return -EPROTO;
	id->vm = (uint8_t)vm;
	id->peer_id = peer;
	id->vector = vec;
	id->client = (uint16_t)cl;
	id->uid = ivsock_ld32(&e->uid);
	return 0;
}

static inline bool owner_matches(struct ivsock_slot_val v, uint8_t vm, int client)
{
	return v.vm == vm && (client < 0 || v.client == (uint16_t)client);
}

/*
 * The connector's (vm, client): the slot owner, except in ACCEPTING where the
 * slot names the acceptor and the connector is read from end[0] (written in
 * INIT, before the offer existed). @return 0 or -EPROTO.
 */
static int conn_owner(const struct ivsock_region *rg, const struct ivsock_channel *c,
		      struct ivsock_slot_val v, uint8_t *vm, uint16_t *client)
{
	uint32_t cvm, ccl;

	if (v.state != IVSOCK_CHAN_ACCEPTING) {
		if (v.vm >= rg->vm_cap)
			return -EPROTO;
		*vm = v.vm;
		*client = v.client;
		return 0;
	}
	cvm = ivsock_ld32(&c->end[0].vm_index);
	ccl = ivsock_ld32(&c->end[0].client);
	if (cvm >= rg->vm_cap || ccl > 65535)
		return -EPROTO;
	*vm = (uint8_t)cvm;
	*client = (uint16_t)ccl;
	return 0;
}

static bool in_partition(const struct ivsock_region *rg, uint32_t bidx, uint32_t vm)
{
	return bidx < rg->nblocks && ivsock_region_block_vm(rg, bidx) == vm;
}

/* Copy the block reference once; it is checked again at each use
 * (in_partition(), block_check()). */
static void read_refs(const struct ivsock_region *rg, const struct ivsock_channel *c,
		      uint32_t vm, struct chan_refs *r)
{
	r->vm = vm;
	r->block = ivsock_ld32(&c->block);
	r->block_gen = ivsock_ld32(&c->block_gen);
	r->valid = vm < rg->vm_cap && r->block_gen != 0;
}

static void refs_from_view(const struct ivsock_chan_view *v, struct chan_refs *r)
{
	r->vm = v->ring_vm;
	r->block = v->block_idx;
	r->block_gen = v->block_gen;
	r->valid = r->block_gen != 0 && v->ring_vm < IVSOCK_MAX_VMS;
}

/*
 * A block reference is usable iff it lies in the connector's partition and
 * its block slot is claimed, with that generation, by the connector's VM
 * (and, if client >= 0, client). @return its memory or NULL; *ring_size is
 * its class's ring size.
 */
static void *block_check(const struct ivsock_region *rg, uint32_t bidx, uint32_t bgen,
			 uint32_t vm, int client, uint32_t *ring_size)
{
	struct ivsock_slot_val v;
	int k;

	if (!bgen || !in_partition(rg, bidx, vm))
		return NULL;
	v = ivsock_slot_get(&rg->blockslots[bidx]);
	if (v.gen != bgen || v.state != BLOCK_ACTIVE || v.vm != vm ||
	    (client >= 0 && v.client != (uint16_t)client))
		return NULL;
	k = ivsock_region_block_class(rg, bidx);
	if (k < 0)
		return NULL;
	*ring_size = rg->class[k].ring_size;
	return ivsock_region_block_mem(rg, bidx);
}

/* Point v's rings and ctl pages at a block mapped at mem. tx is the ring we
 * produce: our producer words, the peer's consumer words, data in our half;
 * rx the other way round. Each ring is attached on its own (a ring whose
 * indices are corrupt is left zeroed: no view). */
static void view_attach_each(struct ivsock_chan_view *v, void *mem, uint32_t ring_size,
			     int side)
{
	struct ivsock_end_ctl *me = ivsock_block_ctl(mem, ring_size, side);
	struct ivsock_end_ctl *other = ivsock_block_ctl(mem, ring_size, !side);

	v->ring_size = ring_size;
	v->my_ctl = me;
	v->peer_ctl = other;
	if (ivsock_ring_attach(&v->tx, &me->prod, &other->cons,
			       ivsock_block_data(mem, ring_size, side), ring_size,
			       IVSOCK_RING_PRODUCER) < 0)
		memset(&v->tx, 0, sizeof(v->tx));
	if (ivsock_ring_attach(&v->rx, &other->prod, &me->cons,
			       ivsock_block_data(mem, ring_size, !side), ring_size,
			       IVSOCK_RING_CONSUMER) < 0)
		memset(&v->rx, 0, sizeof(v->rx));
}

static int view_attach(struct ivsock_chan_view *v, void *mem, uint32_t ring_size, int side)
{
	struct ivsock_end_ctl *me = ivsock_block_ctl(mem, ring_size, side);
	struct ivsock_end_ctl *other = ivsock_block_ctl(mem, ring_size, !side);
	int rc;

	v->ring_size = ring_size;
	v->my_ctl = me;
	v->peer_ctl = other;
	rc = ivsock_ring_attach(&v->tx, &me->prod, &other->cons,
				ivsock_block_data(mem, ring_size, side), ring_size,
				IVSOCK_RING_PRODUCER);
	if (rc < 0)
		return rc;
	return ivsock_ring_attach(&v->rx, &other->prod, &me->cons,
				  ivsock_block_data(mem, ring_size, !side), ring_size,
				  IVSOCK_RING_CONSUMER);
}

int ivsock_chan_view_block(struct ivsock_chan_view *v, void *block, uint32_t ring_size,
			   int side, uint32_t idx, uint32_t gen)
{
	if (!v || !block || (side != 0 && side != 1) ||
	    ring_size < IVSOCK_BLOCK_RING_MIN || ring_size > IVSOCK_BLOCK_RING_MAX ||
	    (ring_size & (ring_size - 1)))
		return -EINVAL;
	memset(v, 0, sizeof(*v));
	v->idx = idx;
	v->gen = gen;
	v->side = side;
	v->ring_vm = IVSOCK_VM_NONE;
	v->peer.vm = IVSOCK_VM_NONE;
	return view_attach(v, block, ring_size, side);
}

static int attach_block(struct ivsock_region *rg, const struct chan_refs *r, int client,
			struct ivsock_chan_view *v)
{
	uint32_t ring_size = 0;
	void *mem;
	int rc;

	if (!in_partition(rg, r->block, r->vm))
		return -EPROTO;
	mem = block_check(rg, r->block, r->block_gen, r->vm, client, &ring_size);
	if (!mem)
		return -ESTALE;
	rc = view_attach(v, mem, ring_size, v->side);
	if (rc < 0)
		return rc;
	v->block_idx = r->block;
	v->block_gen = r->block_gen;
	v->ring_vm = r->vm;
	return 0;
}

uint32_t ivsock_chan_dst_vm(const struct ivsock_region *rg, uint8_t my_vm,
			    const struct ivsock_tuple *t)
{
	int rc;

	if (ivsock_addr_is_loopback(&t->dst))
		return my_vm;
	rc = ivsock_dir_find_addr(rg, &t->dst);
	return rc >= 0 ? (uint32_t)rc : IVSOCK_VM_NONE;
}

int ivsock_chan_open(struct ivsock_region *rg, const struct ivsock_end_id *me,
		     const struct ivsock_tuple *t, uint32_t dst_vm, uint32_t cls,
		     uint32_t *idx, uint32_t *gen)
{
	uint32_t i, g, b, bg, ring_size = 0;
	void *mem;
	int rc;

	if (me->vm >= rg->vm_cap || cls >= rg->nclasses ||
	    (dst_vm >= rg->vm_cap && dst_vm != IVSOCK_VM_NONE))
		return -EINVAL;
	rc = ivsock_block_alloc(rg, me->vm, cls, me->client, &b, &bg);
	if (rc < 0)
		return rc;
	mem = block_check(rg, b, bg, me->vm, me->client, &ring_size);
	if (!mem) {
		ivsock_block_free(rg, b, bg);
		return -EAGAIN; /* someone moved our claim: corrupt peer */
	}
	for (i = 0; i < rg->channel_cap; i++) {
		struct ivsock_channel *c = &rg->channels[i];

		g = ivsock_slot_claim(&c->slot, me->vm, me->client);
		if (!g)
			continue;
		ivsock_st32(&c->block, b);
		ivsock_st32(&c->block_gen, bg);
		ivsock_st32(&c->next_block, 0);
		ivsock_st32(&c->next_block_gen, 0);
		ivsock_store_relaxed(&c->resize_to, 0);
		ivsock_copy_to_shared(&c->tuple, t, sizeof(*t));
		ivsock_st32(&c->dst_vm, dst_vm);
		end_clear(&c->end[1]);
		ctl_write(ivsock_block_ctl(mem, ring_size, IVSOCK_SIDE_CONNECTOR), me);
		end_write(&c->end[0], me, IVSOCK_END_ATTACHED);
		if (ivsock_slot_move(&c->slot, g, IVSOCK_SLOT_INIT, IVSOCK_CHAN_OFFERED) < 0) {
			/* Someone moved our claim (corrupt peer): give it all back,
			 * block first. */
			ivsock_block_free(rg, b, bg);
			ivsock_slot_release(&c->slot, g);
			return -EAGAIN;
		}
		*idx = i;
		*gen = g;
		return 0;
	}
	ivsock_block_free(rg, b, bg);
	return -ENOSPC;
}

int ivsock_chan_track(struct ivsock_region *rg, const struct ivsock_end_id *me,
		      const struct ivsock_tuple *t, uint32_t dst_vm, uint32_t *idx, uint32_t *gen)
{
	uint32_t i, g;

	if (me->vm >= rg->vm_cap || (dst_vm >= rg->vm_cap && dst_vm != IVSOCK_VM_NONE))
		return -EINVAL;
	for (i = 0; i < rg->channel_cap; i++) {
		struct ivsock_channel *c = &rg->channels[i];

		g = ivsock_slot_claim(&c->slot, me->vm, me->client);
		if (!g)
			continue;
		ivsock_st32(&c->block, 0);
		ivsock_st32(&c->block_gen, 0); /* names no block */
		ivsock_st32(&c->next_block, 0);
		ivsock_st32(&c->next_block_gen, 0);
		ivsock_st32(&c->offer, 0);
		ivsock_st32(&c->offer_gen, 0);
		ivsock_store_relaxed(&c->resize_to, 0);
		ivsock_store_relaxed(&c->promote_req, 0);
		ivsock_copy_to_shared(&c->tuple, t, sizeof(*t));
		ivsock_st32(&c->dst_vm, dst_vm);
		end_clear(&c->end[1]);
		end_write(&c->end[0], me, IVSOCK_END_ATTACHED);
		if (ivsock_slot_move(&c->slot, g, IVSOCK_SLOT_INIT, IVSOCK_CHAN_TCP) < 0) {
			ivsock_slot_release(&c->slot, g);
			return -EAGAIN;
		}
		*idx = i;
		*gen = g;
		return 0;
	}
	return -ENOSPC;
}

int ivsock_chan_accept(struct ivsock_region *rg, uint32_t idx, uint32_t gen,
		       uint8_t expect_vm, const struct ivsock_end_id *me,
		       struct ivsock_chan_view *view)
{
	struct ivsock_channel *c;
	struct ivsock_slot_val v, a;
	struct chan_refs refs;
	uint64_t old;
	uint32_t dst_vm;
	int rc;

	if (idx >= rg->channel_cap)
		return -EPROTO;
	if (me->vm >= rg->vm_cap)
		return -EINVAL;
	c = &rg->channels[idx];
	old = ivsock_load_acquire(&c->slot);
	v = ivsock_slot_unpack(old);
	if (v.gen != gen || v.state != IVSOCK_CHAN_OFFERED)
		return -ESTALE;
	if (v.vm != expect_vm || v.vm >= rg->vm_cap)
		return -EPROTO;
	/* The connector found the listener's VM by the tuple's destination:
	 * nobody else may take its connection. */
	dst_vm = ivsock_ld32(&c->dst_vm);
	if (dst_vm != IVSOCK_VM_NONE && dst_vm != me->vm)
		return -EACCES;
	memset(view, 0, sizeof(*view));
	view->idx = idx;
	view->gen = gen;
	view->side = IVSOCK_SIDE_ACCEPTOR;
	view->expect_peer_vm = v.vm + 1U;
	read_refs(rg, c, v.vm, &refs);
	if (!refs.valid)
		return -EPROTO;
	rc = read_end(&c->end[0], &view->peer, rg->vm_cap);
	if (rc < 0)
		return rc;
	if (view->peer.vm != v.vm || view->peer.client != v.client)
		return -EPROTO;
	rc = attach_block(rg, &refs, v.client, view);
	if (rc < 0)
		return rc;
	/* Win the race against the connector's abandon first, and only then
	 * write end[1]: a loser must never write into a slot that may have
	 * been freed and reused meanwhile. While we write, the slot names us
	 * as its owner, so that if we die here our agent finds the channel. */
	a = v;
	a.state = IVSOCK_CHAN_ACCEPTING;
	a.vm = me->vm;
	a.client = me->client;
	if (!ivsock_cas(&c->slot, &old, ivsock_slot_pack(a)))
		return -ESTALE;
	if (__builtin_expect(ivsock_chan_accepting_hook != NULL, 0))
		ivsock_chan_accepting_hook(idx);
	ctl_write(view->my_ctl, me);
	end_write(&c->end[1], me, IVSOCK_END_ATTACHED);
	/* Release: end[1] is visible to the connector once it sees CONNECTED;
	 * the owner is the connector again. */
	old = ivsock_slot_pack(a);
	v.state = IVSOCK_CHAN_CONNECTED;
	/* seq_cst: a connector that closed while we were ACCEPTING saw this
	 * state before the move, and our later close must see its CLOSED. */
	if (!atomic_compare_exchange_strong(&c->slot, &old, ivsock_slot_pack(v)))
		return -EPROTO; /* someone else moved our channel: corrupt peer */
	return 0;
}

int ivsock_chan_view_connector(struct ivsock_region *rg, uint32_t idx, uint32_t gen,
			       struct ivsock_chan_view *view)
{
	struct ivsock_channel *c;
	struct ivsock_slot_val v;
	struct chan_refs refs;
	uint8_t cvm;
	uint16_t ccl;
	uint32_t dst_vm;
	int rc;

	if (idx >= rg->channel_cap)
		return -EINVAL;
	c = &rg->channels[idx];
	v = ivsock_slot_get(&c->slot);
	if (v.gen != gen || v.state == IVSOCK_SLOT_FREE || v.state == IVSOCK_SLOT_INIT)
		return -ESTALE;
	if (conn_owner(rg, c, v, &cvm, &ccl) < 0)
		return -EPROTO;
	memset(view, 0, sizeof(*view));
	view->idx = idx;
	view->gen = gen;
	view->side = IVSOCK_SIDE_CONNECTOR;
	read_refs(rg, c, cvm, &refs);
	if (!refs.valid)
		return -EPROTO;
	rc = attach_block(rg, &refs, ccl, view);
	if (rc < 0)
		return rc;
	dst_vm = ivsock_ld32(&c->dst_vm);
	view->expect_peer_vm = dst_vm < rg->vm_cap ? dst_vm + 1 : 0;
	view->peer.vm = IVSOCK_VM_NONE;
	return 0;
}

int ivsock_chan_learn_peer(struct ivsock_region *rg, struct ivsock_chan_view *view)
{
	struct ivsock_channel *c;
	struct ivsock_slot_val v;
	struct ivsock_end_id peer;
	int rc;

	if (view->idx >= rg->channel_cap)
		return -EINVAL;
	c = &rg->channels[view->idx];
	v = ivsock_slot_get(&c->slot);
	if (v.gen != view->gen)
		return -ESTALE;
	if (v.state == IVSOCK_CHAN_OFFERED || v.state == IVSOCK_CHAN_ACCEPTING)
		return -EAGAIN;
	if (v.state != IVSOCK_CHAN_CONNECTED && v.state != IVSOCK_CHAN_REVOKED &&
	    v.state != IVSOCK_CHAN_DEMOTED)
		return -ESTALE;
	/* The acquire in ivsock_slot_get() pairs with the release of the
	 * ACCEPTING -> CONNECTED move: end[1] is complete. */
	rc = read_end(&c->end[1], &peer, rg->vm_cap);
	if (rc < 0)
		return rc;
	/* The acceptor must be in the VM the connection was meant for. */
	if (view->expect_peer_vm && peer.vm + 1U != view->expect_peer_vm)
		return -EPROTO;
	view->peer = peer;
	return 0;
}

int ivsock_chan_abandon(struct ivsock_region *rg, uint32_t idx, uint32_t gen)
{
	if (idx >= rg->channel_cap)
		return -EINVAL;
	return ivsock_slot_move(&rg->channels[idx].slot, gen, IVSOCK_CHAN_OFFERED,
				IVSOCK_CHAN_ABANDONED);
}

uint32_t ivsock_chan_peer_flags(const struct ivsock_region *rg, const struct ivsock_chan_view *v)
{
	if (v->idx >= rg->channel_cap)
		return IVSOCK_END_CLOSED | IVSOCK_END_DEAD;
	return ivsock_load_acquire(&rg->channels[v->idx].end[!v->side].flags);
}

/*
 * Free the block, then the slot. Callers come here only when no end can use
 * the channel any more (ABANDONED, or both ends closed); two of them may race:
 * every free is generation-checked, so the second one does nothing. The block
 * goes first so that it is never free (and reusable) while a live slot still
 * names it, and only a block of the connector's partition is freed (the
 * reference is shared memory: a corrupt one must not free another VM's
 * block). @return 1 if we released the slot.
 */
static int chan_free(struct ivsock_region *rg, struct ivsock_channel *c, uint32_t gen,
		     const struct chan_refs *r)
{
	if (r->valid && in_partition(rg, r->block, r->vm))
		ivsock_block_free(rg, r->block, r->block_gen);
	return ivsock_slot_release(&c->slot, gen) == 0 ? 1 : 0;
}

/* The references to use for (c, v): the caller's validated copy, or a fresh
 * one from the channel checked against the connector's partition. */
static void get_refs(const struct ivsock_region *rg, const struct ivsock_channel *c,
		     struct ivsock_slot_val v, const struct chan_refs *mine,
		     struct chan_refs *r)
{
	uint8_t cvm;
	uint16_t ccl;

	if (mine && mine->valid) {
		*r = *mine;
		return;
	}
	if (conn_owner(rg, c, v, &cvm, &ccl) < 0) {
		memset(r, 0, sizeof(*r));
		return;
	}
	read_refs(rg, c, cvm, r);
}

/*
 * Mark end `side` closed, with its rings; free if the other end is done.
 * Never waits: see "who frees" in docs/layout.md.
 */
static int close_end(struct ivsock_region *rg, uint32_t idx, uint32_t gen,
		     int side, bool reset, bool dead, const struct chan_refs *mine)
{
	struct ivsock_channel *c = &rg->channels[idx];
	struct ivsock_slot_val v = ivsock_slot_get(&c->slot);
	struct ivsock_chan_view bv;
	struct chan_refs r;
	uint32_t other, ring_size = 0;
	void *mem;

	if (v.gen != gen || v.state == IVSOCK_SLOT_FREE || v.state == IVSOCK_SLOT_INIT)
		return -ESTALE;
	/* In ACCEPTING only the connector's end can close here: the acceptor
	 * is inside ivsock_chan_accept() (its agent uses accept_abort()). */
	if (v.state == IVSOCK_CHAN_ACCEPTING && side != IVSOCK_SIDE_CONNECTOR)
		return -ESTALE;
	get_refs(rg, c, v, mine, &r);
	if (side == IVSOCK_SIDE_CONNECTOR && v.state == IVSOCK_CHAN_OFFERED &&
	    ivsock_chan_abandon(rg, idx, gen) == 0)
		return chan_free(rg, c, gen, &r);
	if (v.state == IVSOCK_CHAN_ABANDONED)
		return side == IVSOCK_SIDE_CONNECTOR ? chan_free(rg, c, gen, &r) : -ESTALE;
	if (v.state == IVSOCK_CHAN_TCP) /* no block: only the slot goes */
		return side == IVSOCK_SIDE_CONNECTOR ?
		       ivsock_slot_release(&c->slot, gen) == 0 : -ESTALE;

	if (r.valid) {
		mem = block_check(rg, r.block, r.block_gen, r.vm, -1, &ring_size);
		if (mem) {
			/* Each ring on its own: corrupt indices on one must
			 * not keep the other from being closed. */
			memset(&bv, 0, sizeof(bv));
			bv.side = side;
			view_attach_each(&bv, mem, ring_size, side);
			ivsock_chan_end_close_rings(&bv, reset);
		}
	}

	/* Store-buffering pair with the other end's close (or accept_abort()):
	 * each party marks itself with a seq_cst RMW and then looks at the
	 * other with seq_cst loads, so at least one sees both marks. (RMWs and
	 * seq_cst loads instead of a fence: the same on x86/arm64, and visible
	 * to ThreadSanitizer.) */
	atomic_fetch_or(&c->end[side].flags,
			IVSOCK_END_CLOSED | (dead ? IVSOCK_END_DEAD : 0));
	v = ivsock_slot_unpack(atomic_load(&c->slot));
	if (v.gen != gen || v.state == IVSOCK_SLOT_FREE)
		return 0;
	switch (v.state) {
	case IVSOCK_CHAN_ACCEPTING:
		/* In flux: the acceptor completes and frees at its close (it
		 * will see our CLOSED), or its agent aborts the accept and
		 * sees our CLOSED after its own fence. */
		return 0;
	case IVSOCK_CHAN_ABANDONED:
		/* The acceptor died in ACCEPTING and its agent gave the
		 * channel back: the connector frees. */
		return side == IVSOCK_SIDE_CONNECTOR ? chan_free(rg, c, gen, &r) : 0;
	case IVSOCK_CHAN_OFFERED:
		if (side == IVSOCK_SIDE_CONNECTOR && ivsock_chan_abandon(rg, idx, gen) == 0)
			return chan_free(rg, c, gen, &r);
		return 0;
	case IVSOCK_CHAN_CONNECTED:
	case IVSOCK_CHAN_REVOKED:
	case IVSOCK_CHAN_DEMOTED:
		break;
	default:
		return 0; /* garbage state: leave it to the owner's reclaim */
	}
	other = atomic_load(&c->end[!side].flags);
	if ((other & IVSOCK_END_CLOSED) || !(other & IVSOCK_END_ATTACHED))
		return chan_free(rg, c, gen, &r);
	return 0;
}

int ivsock_chan_close(struct ivsock_region *rg, uint32_t idx, uint32_t gen,
		      int side, bool reset)
{
	if (idx >= rg->channel_cap || (side != 0 && side != 1))
		return -EINVAL;
	return close_end(rg, idx, gen, side, reset, false, NULL);
}

int ivsock_chan_close_view(struct ivsock_region *rg, const struct ivsock_chan_view *v,
			   bool reset)
{
	struct chan_refs r;

	if (v->idx >= rg->channel_cap || (v->side != 0 && v->side != 1))
		return -EINVAL;
	refs_from_view(v, &r);
	return close_end(rg, v->idx, v->gen, v->side, reset, false, r.valid ? &r : NULL);
}

int ivsock_chan_end_close_rings(struct ivsock_chan_view *v, bool reset)
{
	int n = 0;

	if (!v)
		return -EINVAL;
	/* A ring whose attach failed (corrupt indices: no view) is left
	 * alone; the one that attached is still closed. */
	if (v->tx.p && v->tx.c) {
		ivsock_ring_close_write(&v->tx, reset);
		n++;
	}
	if (v->rx.p && v->rx.c) {
		ivsock_ring_close_read(&v->rx);
		n++;
	}
	return n;
}

void ivsock_chan_count(struct ivsock_region *rg, const struct ivsock_chan_view *v,
		       uint64_t tx, uint64_t rx)
{
	struct ivsock_end_ctl *e = v->my_ctl;

	(void)rg;
	if (!e)
		return;
	if (tx)
		ivsock_store_relaxed(&e->tx_bytes, ivsock_load_relaxed(&e->tx_bytes) + tx);
	if (rx)
		ivsock_store_relaxed(&e->rx_bytes, ivsock_load_relaxed(&e->rx_bytes) + rx);
}

/* Doorbell address of end `side` of c: the copy in its ctl page (a forked
 * holder re-points it), validated, else the table's. @return 0 or -EPROTO. */
static int end_doorbell(const struct ivsock_region *rg, const struct ivsock_channel *c,
			int side, uint32_t *peer_id, uint32_t *vector)
{
	struct ivsock_slot_val v = ivsock_slot_get((ivsock_a64 *)&c->slot);
	struct ivsock_end_id id;
	struct chan_refs r;
	uint32_t ring_size = 0;
	uint8_t cvm;
	uint16_t ccl;
	void *mem;

	if (v.state != IVSOCK_SLOT_FREE && v.state != IVSOCK_SLOT_INIT &&
	    conn_owner(rg, c, v, &cvm, &ccl) == 0) {
		read_refs(rg, c, cvm, &r);
		mem = r.valid ? block_check(rg, r.block, r.block_gen, r.vm, -1, &ring_size) : NULL;
		if (mem) {
			struct ivsock_end_ctl *e = ivsock_block_ctl(mem, ring_size, side);
			uint32_t p = ivsock_ld32(&e->peer_id), vec = ivsock_ld32(&e->vector);

			if (p <= 65535 && vec <= 65535) {
				*peer_id = p;
				*vector = vec;
				return 0;
			}
		}
	}
	if (read_end(&c->end[side], &id, rg->vm_cap) < 0)
		return -EPROTO;
	*peer_id = id.peer_id;
	*vector = id.vector;
	return 0;
}

struct ivsock_end_ctl *ivsock_chan_end_ctl(const struct ivsock_region *rg, uint32_t idx,
					   int side, uint32_t *ring_size, uint32_t *block)
{
	const struct ivsock_channel *c;
	struct ivsock_slot_val v;
	struct chan_refs r;
	uint32_t rs = 0;
	uint8_t cvm;
	uint16_t ccl;
	void *mem;

	if (idx >= rg->channel_cap || (side != 0 && side != 1))
		return NULL;
	c = &rg->channels[idx];
	v = ivsock_slot_get((ivsock_a64 *)&c->slot);
	if (v.state == IVSOCK_SLOT_FREE || v.state == IVSOCK_SLOT_INIT ||
	    conn_owner(rg, c, v, &cvm, &ccl) < 0)
		return NULL;
	read_refs(rg, c, cvm, &r);
	mem = r.valid ? block_check(rg, r.block, r.block_gen, r.vm, -1, &rs) : NULL;
	if (!mem)
		return NULL;
	if (ring_size)
		*ring_size = rs;
	if (block)
		*block = r.block;
	return ivsock_block_ctl(mem, rs, side);
}

int ivsock_chan_peer_doorbell(const struct ivsock_region *rg, const struct ivsock_chan_view *v,
			      uint32_t *peer_id, uint32_t *vector)
{
	const struct ivsock_end_ctl *e = v->peer_ctl;

	if (e) {
		uint32_t p = ivsock_ld32(&e->peer_id), vec = ivsock_ld32(&e->vector);

		if (p <= 65535 && vec <= 65535) {
			*peer_id = p;
			*vector = vec;
			return 0;
		}
	}
	if (!rg || v->idx >= rg->channel_cap || (v->side != 0 && v->side != 1))
		return -EPROTO;
	return end_doorbell(rg, &rg->channels[v->idx], !v->side, peer_id, vector);
}

static void ring_end(const struct ivsock_region *rg, const struct ivsock_channel *c, int side,
		     ivsock_ring_fn ring, void *arg)
{
	uint32_t peer, vec;

	if (ring && end_doorbell(rg, c, side, &peer, &vec) == 0)
		ring(arg, peer, vec);
}

/*
 * The acceptor that owns ACCEPTING slot (c, v) died between its two moves:
 * give the channel back to the connector as ABANDONED (nobody consumed a
 * byte: the connector takes its bytes back and falls back to TCP without
 * loss), then free it if the connector already closed. The CAS, a full
 * fence, then a look at end[0] pair with close_end()'s store, fence, look at
 * the slot: at least one of the two frees. @return 1 if we moved it.
 */
static int accept_abort(struct ivsock_region *rg, struct ivsock_channel *c,
			struct ivsock_slot_val v, ivsock_ring_fn ring, void *arg)
{
	uint64_t old = ivsock_slot_pack(v);
	struct ivsock_slot_val nv = v;
	struct chan_refs r;
	uint8_t cvm;
	uint16_t ccl;

	if (conn_owner(rg, c, v, &cvm, &ccl) < 0) {
		/* No valid connector to give it back to: free the slot only
		 * (the ring references cannot be trusted to any partition). */
		return ivsock_slot_release(&c->slot, v.gen) == 0;
	}
	read_refs(rg, c, cvm, &r);
	nv.state = IVSOCK_CHAN_ABANDONED;
	nv.vm = cvm;
	nv.client = ccl;
	/* seq_cst CAS, then a seq_cst look at end[0]: see close_end(). */
	if (!atomic_compare_exchange_strong(&c->slot, &old, ivsock_slot_pack(nv)))
		return 0;
	ivsock_store_release(&c->end[1].flags, IVSOCK_END_CLOSED | IVSOCK_END_DEAD);
	if (atomic_load(&c->end[0].flags) & IVSOCK_END_CLOSED)
		chan_free(rg, c, v.gen, &r);
	else
		ring_end(rg, c, 0, ring, arg); /* the connector may be waiting */
	return 1;
}

/* Close every end matching (vm, client) (client < 0: any); ring the
 * surviving ends. Both ends of a channel may match (a connection inside one
 * VM or one process). Also frees what a dead owner left half-done: INIT
 * slots it claimed, ACCEPTING slots it was writing. One pass, no waiting. */
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

		if (v.state == IVSOCK_SLOT_FREE)
			continue;
		if (v.state == IVSOCK_SLOT_INIT) {
			/* Claimed by a process that died inside ivsock_chan_open():
			 * its rings are freed by owner below. */
			if (owner_matches(v, vm, client) &&
			    ivsock_slot_release(&c->slot, v.gen) == 0)
				n++;
			continue;
		}
		if (v.state == IVSOCK_CHAN_ACCEPTING && owner_matches(v, vm, client)) {
			n += accept_abort(rg, c, v, ring, arg);
			continue;
		}
		if (v.state == IVSOCK_CHAN_TCP) {
			/* a connection on TCP: its connector's record only */
			struct ivsock_end_id tid;

			if (read_end(&c->end[0], &tid, rg->vm_cap) == 0 && tid.vm == vm &&
			    (client < 0 || tid.client == (uint16_t)client) &&
			    ivsock_slot_release(&c->slot, v.gen) == 0)
				n++;
			continue;
		}
		if (v.state < IVSOCK_CHAN_OFFERED || v.state > IVSOCK_CHAN_DEMOTED)
			continue;
		for (side = 0; side < 2; side++) {
			uint32_t f = ivsock_load_acquire(&c->end[side].flags);

			if (side == IVSOCK_SIDE_ACCEPTOR && v.state == IVSOCK_CHAN_ACCEPTING)
				continue; /* the live acceptor is writing it */
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
			if (close_end(rg, i, v.gen, side, true, true, NULL) >= 0)
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
			    ivsock_slot_get(&c->slot).gen == v.gen)
				ring_end(rg, c, side, ring, arg);
		}
	}
	return n;
}

int ivsock_block_release_unreferenced(struct ivsock_region *rg, uint8_t vm, int client)
{
	uint32_t i, k, nb = rg->nblocks;
	uint64_t *pinned;
	int n = 0;

	if (vm >= rg->vm_cap || !nb)
		return 0;
	pinned = calloc((nb + 63) / 64, sizeof(*pinned));
	if (!pinned)
		return -ENOMEM;
	/* A block named by a channel past INIT stays: that channel's last
	 * close frees it. (INIT references are not written yet; an INIT slot
	 * of a dead owner was released before we got here.) */
	for (i = 0; i < rg->channel_cap; i++) {
		struct ivsock_channel *c = &rg->channels[i];
		struct ivsock_slot_val v = ivsock_slot_get(&c->slot);
		uint32_t b[2];

		if (v.state == IVSOCK_SLOT_FREE || v.state == IVSOCK_SLOT_INIT ||
		    v.state == IVSOCK_CHAN_TCP)
			continue; /* (a TCP entry names no block) */
		b[0] = ivsock_ld32(&c->block);
		b[1] = ivsock_ld32(&c->next_block_gen) ? ivsock_ld32(&c->next_block) : nb;
		for (k = 0; k < 2; k++)
			if (b[k] < nb)
				pinned[b[k] / 64] |= 1ULL << (b[k] % 64);
	}
	for (k = 0; k < rg->nclasses; k++) {
		const struct ivsock_class_desc *cd = &rg->class[k];
		uint32_t first = cd->first_block + (uint32_t)vm * cd->blocks_per_vm;

		for (i = first; i < first + cd->blocks_per_vm; i++) {
			struct ivsock_slot_val v;

			if (pinned[i / 64] & (1ULL << (i % 64)))
				continue;
			v = ivsock_slot_get(&rg->blockslots[i]);
			if (v.state == IVSOCK_SLOT_FREE || !owner_matches(v, vm, client))
				continue;
			if (ivsock_block_free(rg, i, v.gen) == 0)
				n++;
		}
	}
	free(pinned);
	return n;
}

int ivsock_chan_release_owner(struct ivsock_region *rg, uint8_t vm, uint16_t client,
			      ivsock_ring_fn ring, void *arg)
{
	int n = release_matching(rg, vm, client, ring, arg);

	ivsock_block_release_unreferenced(rg, vm, client);
	return n;
}

int ivsock_chan_release_vm(struct ivsock_region *rg, uint8_t vm,
			   ivsock_ring_fn ring, void *arg)
{
	int n = release_matching(rg, vm, -1, ring, arg);

	ivsock_block_release_unreferenced(rg, vm, -1);
	return n;
}

int ivsock_chan_reclaim_vm(struct ivsock_region *rg, uint8_t vm,
			   ivsock_ring_fn ring, void *arg)
{
	uint32_t i;
	int n;

	if (vm >= rg->vm_cap)
		return 0;
	/* Every end in vm is closed (with reset) first: what has no live end
	 * left is freed by those closes. */
	n = release_matching(rg, vm, -1, ring, arg);
	for (i = 0; i < rg->channel_cap; i++) {
		struct ivsock_channel *c = &rg->channels[i];
		struct ivsock_slot_val v = ivsock_slot_get(&c->slot);
		struct chan_refs r;
		uint8_t cvm;
		uint16_t ccl;
		uint32_t f;
		uint64_t old;

		if (v.state == IVSOCK_SLOT_FREE || v.state == IVSOCK_SLOT_INIT)
			continue;
		if (conn_owner(rg, c, v, &cvm, &ccl) < 0 || cvm != vm)
			continue;
		/* Rings in vm's partition. */
		switch (v.state) {
		case IVSOCK_CHAN_OFFERED:
			if (ivsock_chan_abandon(rg, i, v.gen) < 0)
				continue; /* an acceptor just won it: it frees at close */
			/* fall through */
		case IVSOCK_CHAN_ABANDONED:
			read_refs(rg, c, vm, &r);
			n += chan_free(rg, c, v.gen, &r);
			continue;
		case IVSOCK_CHAN_CONNECTED:
		case IVSOCK_CHAN_DEMOTED:
			break;
		default: /* ACCEPTING (the acceptor frees at close), REVOKED */
			continue;
		}
		f = ivsock_load_acquire(&c->end[1].flags);
		if (!(f & IVSOCK_END_ATTACHED) || (f & IVSOCK_END_CLOSED)) {
			/* Both ends are done (the release above raced a close). */
			read_refs(rg, c, vm, &r);
			n += chan_free(rg, c, v.gen, &r);
			continue;
		}
		/* A survivor still holds the acceptor end: withdraw the channel
		 * under the same generation and keep its rings claimed (they
		 * are pinned in ivsock_ring_release_vm()) until it closes. */
		old = ivsock_slot_pack(v);
		{
			struct ivsock_slot_val nv = v;

			nv.state = IVSOCK_CHAN_REVOKED;
			if (!ivsock_cas(&c->slot, &old, ivsock_slot_pack(nv)))
				continue;
		}
		ring_end(rg, c, 1, ring, arg);
		n++;
	}
	return n;
}

int ivsock_chan_demote(struct ivsock_region *rg, uint32_t idx, uint32_t gen,
		       ivsock_ring_fn ring, void *arg)
{
	return ivsock_chan_resize(rg, idx, gen, 0, ring, arg);
}

int ivsock_chan_resize(struct ivsock_region *rg, uint32_t idx, uint32_t gen, uint32_t ring_size,
		       ivsock_ring_fn ring, void *arg)
{
	struct ivsock_channel *c;
	struct ivsock_slot_val v, nv;
	uint64_t old;

	if (idx >= rg->channel_cap)
		return -EINVAL;
	c = &rg->channels[idx];
	v = ivsock_slot_get(&c->slot);
	if (v.gen != gen || v.state < IVSOCK_CHAN_OFFERED)
		return -ESTALE;
	if (v.state == IVSOCK_CHAN_DEMOTED)
		return -EALREADY;
	if (v.state != IVSOCK_CHAN_CONNECTED)
		return -EBUSY;
	old = ivsock_slot_pack(v);
	nv = v;
	nv.state = IVSOCK_CHAN_DEMOTED;
	/* before the CAS (release): who sees DEMOTED sees the size */
	ivsock_store_relaxed(&c->resize_to, ring_size);
	if (!ivsock_cas(&c->slot, &old, ivsock_slot_pack(nv)))
		return -EAGAIN;
	/* Sleepers re-check the slot when woken: ring both ends. */
	ring_end(rg, c, 0, ring, arg);
	ring_end(rg, c, 1, ring, arg);
	return 0;
}

int ivsock_chan_promote_req(struct ivsock_region *rg, uint32_t idx, uint32_t gen,
			    uint32_t ring_size, ivsock_ring_fn ring, void *arg)
{
	struct ivsock_channel *c;
	struct ivsock_slot_val v;

	if (idx >= rg->channel_cap)
		return -EINVAL;
	c = &rg->channels[idx];
	v = ivsock_slot_get(&c->slot);
	if (v.gen != gen || v.state < IVSOCK_CHAN_OFFERED)
		return -ESTALE;
	if (v.state != IVSOCK_CHAN_TCP)
		return -EBUSY;
	ivsock_store_relaxed(&c->resize_to, ring_size);
	/* the size before the count (release): who sees the count sees it */
	atomic_fetch_add_explicit(&c->promote_req, 1, memory_order_release);
	ring_end(rg, c, 0, ring, arg); /* a sleeper of the connector looks again */
	return 0;
}

uint32_t ivsock_chan_count_vm(const struct ivsock_region *rg, uint8_t vm)
{
	uint32_t i, n = 0;

	for (i = 0; i < rg->channel_cap; i++) {
		const struct ivsock_channel *c = &rg->channels[i];
		struct ivsock_slot_val v = ivsock_slot_get((ivsock_a64 *)&c->slot);

		if (v.state < IVSOCK_CHAN_OFFERED || v.state == IVSOCK_CHAN_TCP)
			continue;
		if (v.vm == vm || (ivsock_ld32(&c->end[1].vm_index) == vm &&
				   (ivsock_load_acquire((ivsock_a32 *)&c->end[1].flags) &
				    IVSOCK_END_ATTACHED)))
			n++;
	}
	return n;
}
