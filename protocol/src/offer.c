// SPDX-License-Identifier: MIT
/* Offer table keyed by TCP 4-tuple (IPv4 and IPv6), open addressing. */
#include <errno.h>
#include <string.h>

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
	/* One offer per tuple: a second one could never be taken. */
	for (i = 0; i < probe; i++) {
		struct ivsock_offer *o = &rg->offers[(h + i) & mask];
		struct ivsock_slot_val v = ivsock_slot_get(&o->slot);
		struct ivsock_tuple ot;

		if (v.state != IVSOCK_OFFER_POSTED)
			continue;
		memcpy(&ot, &o->tuple, sizeof(ot));
		if (ivsock_tuple_equal(&ot, t) && ivsock_slot_get(&o->slot).gen == v.gen)
			return -EEXIST;
	}
	for (i = 0; i < probe; i++) {
		uint32_t idx = (h + i) & mask;
		struct ivsock_offer *o = &rg->offers[idx];

		g = ivsock_slot_claim(&o->slot, vm, client);
		if (!g)
			continue;
		o->tuple = *t;
		o->channel = chan;
		o->channel_gen = chan_gen;
		if (ivsock_slot_move(&o->slot, g, IVSOCK_SLOT_INIT, IVSOCK_OFFER_POSTED) < 0)
			return -EAGAIN;
		*gen = g;
		return (int)idx;
	}
	return -ENOSPC;
}

int ivsock_offer_take(struct ivsock_region *rg, const struct ivsock_tuple *t,
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
		memcpy(&ot, &o->tuple, sizeof(ot));
		c = o->channel;
		cg = o->channel_gen;
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
