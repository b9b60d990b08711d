// SPDX-License-Identifier: MIT
/* Offer table keyed by TCP 4-tuple (IPv4 and IPv6), open addressing. */
#include <errno.h>
#include <string.h>

#include "ivsock/directory.h"
#include "ivsock/listener.h"
#include "ivsock/offer.h"

bool ivsock_tuple_equal(const struct ivsock_tuple *a, const struct ivsock_tuple *b)
{
	return a->sport == b->sport && a->dport == b->dport &&
	       ivsock_addr_equal(&a->src, &b->src) && ivsock_addr_equal(&a->dst, &b->dst);
}

int ivsock_offer_post(struct ivsock_region *rg, uint8_t vm, uint16_t client,
		      const struct ivsock_tuple *t, uint32_t chan, uint32_t chan_gen,
		      uint32_t *gen)
{
	uint32_t mask = rg->offer_cap - 1, h = ivsock_tuple_hash(t), i, g;
	uint32_t probe = rg->offer_cap < IVSOCK_OFFER_PROBE ? rg->offer_cap : IVSOCK_OFFER_PROBE;

	if (t->src.family != t->dst.family || (t->src.family != IVSOCK_AF_INET &&
					       t->src.family != IVSOCK_AF_INET6))
		return -EINVAL;
	/* One offer per tuple: a second one could never be taken. Markers
	 * (sport 0) are never taken: any number of them. */
	for (i = 0; t->sport && i < probe; i++) {
		struct ivsock_offer *o = &rg->offers[(h + i) & mask];
		struct ivsock_slot_val v = ivsock_slot_get(&o->slot);
		struct ivsock_tuple ot;

		if (v.state != IVSOCK_OFFER_POSTED)
			continue;
		ivsock_copy_from_shared(&ot, &o->tuple, sizeof(ot));
		if (ivsock_tuple_equal(&ot, t) && ivsock_slot_get(&o->slot).gen == v.gen)
			return -EEXIST;
	}
	for (i = 0; i < probe; i++) {
		uint32_t idx = (h + i) & mask;
		struct ivsock_offer *o = &rg->offers[idx];

		g = ivsock_slot_claim(&o->slot, vm, client);
		if (!g)
			continue;
		ivsock_copy_to_shared(&o->tuple, t, sizeof(*t));
		ivsock_st32(&o->channel, chan);
		ivsock_st32(&o->channel_gen, chan_gen);
		if (ivsock_slot_move(&o->slot, g, IVSOCK_SLOT_INIT, IVSOCK_OFFER_POSTED) < 0) {
			ivsock_slot_release(&o->slot, g);
			return -EAGAIN;
		}
		*gen = g;
		return (int)idx;
	}
	return -ENOSPC;
}

/* Take the offer for t; taker_vm >= 0: only one posted from taker_vm when
 * loopback_only (a loopback destination stays inside its VM). */
static int take(struct ivsock_region *rg, const struct ivsock_tuple *t, int taker_vm,
		uint32_t *chan, uint32_t *chan_gen, uint8_t *owner_vm)
{
	uint32_t mask = rg->offer_cap - 1, h = ivsock_tuple_hash(t), i;
	uint32_t probe = rg->offer_cap < IVSOCK_OFFER_PROBE ? rg->offer_cap : IVSOCK_OFFER_PROBE;

	for (i = 0; i < probe; i++) {
		struct ivsock_offer *o = &rg->offers[(h + i) & mask];
		struct ivsock_slot_val v = ivsock_slot_get(&o->slot);
		struct ivsock_tuple ot;
		uint32_t c, cg;

		if (v.state != IVSOCK_OFFER_POSTED)
			continue;
		if (taker_vm >= 0 && v.vm != (uint8_t)taker_vm)
			continue;
		/* One copy of each field; the release below re-checks that the
		 * slot still holds the generation we copied them from. */
		ivsock_copy_from_shared(&ot, &o->tuple, sizeof(ot));
		c = ivsock_ld32(&o->channel);
		cg = ivsock_ld32(&o->channel_gen);
		if (!ivsock_tuple_equal(&ot, t))
			continue;
		/* Removing it is the claim: only one taker can win. */
		if (ivsock_slot_release(&o->slot, v.gen) < 0)
			continue;
		*chan = c;
		*chan_gen = cg;
		if (owner_vm)
			*owner_vm = v.vm;
		return 0;
	}
	return -ENOENT;
}

int ivsock_offer_take(struct ivsock_region *rg, const struct ivsock_tuple *t,
		      uint32_t *chan, uint32_t *chan_gen, uint8_t *owner_vm)
{
	return take(rg, t, -1, chan, chan_gen, owner_vm);
}

/* Is address a one of VM vm's (directory snapshot)? */
static bool vm_has_addr(const struct ivsock_region *rg, uint32_t vm, const struct ivsock_addr *a)
{
	struct ivsock_vm_info info;
	uint32_t j;

	if (ivsock_dir_read(rg, vm, &info) < 0 || info.state != IVSOCK_VM_ALIVE)
		return false;
	for (j = 0; j < info.naddrs; j++)
		if (ivsock_addr_equal(&info.addrs[j], a))
			return true;
	return false;
}

static int take_for(struct ivsock_region *rg, const struct ivsock_tuple *t, uint8_t taker_vm,
		    bool need_listener, uint32_t *chan, uint32_t *chan_gen, uint8_t *owner_vm)
{
	bool lo = ivsock_addr_is_loopback(&t->dst);

	if (taker_vm >= rg->vm_cap)
		return -EINVAL;
	/* The destination must be ours (and a listener of ours must be there):
	 * an offer for another VM's connection is left alone. */
	if (!lo && !vm_has_addr(rg, taker_vm, &t->dst))
		return -EACCES;
	if (need_listener && ivsock_listener_find(rg, taker_vm, &t->dst, t->dport) < 0)
		return -EACCES;
	return take(rg, t, lo ? taker_vm : -1, chan, chan_gen, owner_vm);
}

int ivsock_offer_take_as(struct ivsock_region *rg, const struct ivsock_tuple *t,
			 uint8_t taker_vm, uint32_t *chan, uint32_t *chan_gen,
			 uint8_t *owner_vm)
{
	return take_for(rg, t, taker_vm, true, chan, chan_gen, owner_vm);
}

int ivsock_offer_take_refused(struct ivsock_region *rg, const struct ivsock_tuple *t,
			      uint8_t taker_vm, uint32_t *chan, uint32_t *chan_gen,
			      uint8_t *owner_vm)
{
	return take_for(rg, t, taker_vm, false, chan, chan_gen, owner_vm);
}

static bool posted(const struct ivsock_region *rg, const struct ivsock_tuple *t,
		   uint8_t taker_vm, bool marker)
{
	struct ivsock_tuple key = *t;
	uint32_t mask = rg->offer_cap - 1, h, i;
	uint32_t probe = rg->offer_cap < IVSOCK_OFFER_PROBE ? rg->offer_cap : IVSOCK_OFFER_PROBE;
	int poster;

	if (marker)
		key.sport = 0;
	poster = ivsock_addr_is_loopback(&t->dst) ? taker_vm : ivsock_dir_find_addr(rg, &t->src);
	if (poster < 0)
		return false;
	h = ivsock_tuple_hash(&key);
	for (i = 0; i < probe; i++) {
		const struct ivsock_offer *o = &rg->offers[(h + i) & mask];
		struct ivsock_slot_val v = ivsock_slot_get((ivsock_a64 *)&o->slot);
		struct ivsock_tuple ot;

		if (v.state != IVSOCK_OFFER_POSTED || v.vm != (uint8_t)poster)
			continue;
		ivsock_copy_from_shared(&ot, &o->tuple, sizeof(ot));
		if (ivsock_tuple_equal(&ot, &key))
			return true;
	}
	return false;
}

bool ivsock_offer_marked(const struct ivsock_region *rg, const struct ivsock_tuple *t,
			 uint8_t taker_vm)
{
	return posted(rg, t, taker_vm, true);
}

bool ivsock_offer_posted(const struct ivsock_region *rg, const struct ivsock_tuple *t,
			 uint8_t taker_vm)
{
	return posted(rg, t, taker_vm, false);
}

int ivsock_offer_cancel(struct ivsock_region *rg, uint32_t idx, uint32_t gen)
{
	if (idx >= rg->offer_cap)
		return -EINVAL;
	return ivsock_slot_release(&rg->offers[idx].slot, gen);
}

int ivsock_offer_release_vm(struct ivsock_region *rg, uint8_t vm)
{
	uint32_t i;
	int n = 0;

	for (i = 0; i < rg->offer_cap; i++) {
		struct ivsock_slot_val v = ivsock_slot_get(&rg->offers[i].slot);

		if (v.state != IVSOCK_SLOT_FREE && v.vm == vm &&
		    ivsock_slot_release(&rg->offers[i].slot, v.gen) == 0)
			n++;
	}
	return n;
}

int ivsock_offer_release_owner(struct ivsock_region *rg, uint8_t vm, uint16_t client)
{
	uint32_t i;
	int n = 0;

	for (i = 0; i < rg->offer_cap; i++) {
		struct ivsock_slot_val v = ivsock_slot_get(&rg->offers[i].slot);

		if (ivsock_slot_owned_by(v, vm, client) &&
		    ivsock_slot_release(&rg->offers[i].slot, v.gen) == 0)
			n++;
	}
	return n;
}
