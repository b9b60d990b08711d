/* SPDX-License-Identifier: MIT */
/*
 * Connection offers: the connector posts (4-tuple -> channel) before the
 * kernel connects; the acceptor takes the offer that matches the accepted
 * socket's 4-tuple. Open addressing over a power-of-two table.
 */
#ifndef IVSOCK_OFFER_H
#define IVSOCK_OFFER_H

#include "ivsock/layout.h"

#define IVSOCK_OFFER_PROBE 32 /* slots probed from the hash position */

/* @return slot index with *gen, -ENOSPC (no free slot within the probe
 * window), -EEXIST (same tuple already posted), -EINVAL.
 * A tuple with sport 0 is a marker ("this VM's agent is connecting src to
 * dst:dport; the offer follows", docs/broker.md "The late offer"): several
 * may be posted under one key, none is ever taken (an accepted socket never
 * has port 0), ivsock_offer_marked() finds them. */
int ivsock_offer_post(struct ivsock_region *rg, uint8_t vm, uint16_t client,
		      const struct ivsock_tuple *t, uint32_t chan, uint32_t chan_gen,
		      uint32_t *gen);
/*
 * Find the offer for tuple t, and remove it (whoever removes it owns it).
 * @return 0 with *chan, *chan_gen, *owner_vm set, or -ENOENT.
 */
int ivsock_offer_take(struct ivsock_region *rg, const struct ivsock_tuple *t,
		      uint32_t *chan, uint32_t *chan_gen, uint8_t *owner_vm);
/*
 * The same for an acceptor in VM taker_vm: refuses (-EACCES) without
 * touching any offer unless t's destination is one of taker_vm's addresses
 * in the directory (or loopback, and then only offers posted from taker_vm
 * match) and a listener of taker_vm is registered for (dst, dport).
 * @return 0, -ENOENT, -EACCES, -EINVAL.
 */
int ivsock_offer_take_as(struct ivsock_region *rg, const struct ivsock_tuple *t,
			 uint8_t taker_vm, uint32_t *chan, uint32_t *chan_gen,
			 uint8_t *owner_vm);
/*
 * The same, for an acceptor that refuses the offer of a connection it
 * accepted on TCP: its listener may be gone by then, so only the
 * destination is checked. @return 0, -ENOENT, -EACCES, -EINVAL.
 */
int ivsock_offer_take_refused(struct ivsock_region *rg, const struct ivsock_tuple *t,
			      uint8_t taker_vm, uint32_t *chan, uint32_t *chan_gen,
			      uint8_t *owner_vm);

/* Is a marker posted for (t->src, 0, t->dst, t->dport), by the VM that owns
 * t->src (for a loopback destination: by taker_vm)? */
bool ivsock_offer_marked(const struct ivsock_region *rg, const struct ivsock_tuple *t,
			 uint8_t taker_vm);
/* Is an offer posted for exactly t, by the VM that owns t->src (loopback:
 * taker_vm)? Read-only (a mapping of the tables is enough): a hint, the
 * take decides. */
bool ivsock_offer_posted(const struct ivsock_region *rg, const struct ivsock_tuple *t,
			 uint8_t taker_vm);
/* Withdraw our own offer. @return 0 or -ESTALE (already taken). */
int ivsock_offer_cancel(struct ivsock_region *rg, uint32_t idx, uint32_t gen);
/* Free every offer posted by (vm, client). @return how many. */
int ivsock_offer_release_owner(struct ivsock_region *rg, uint8_t vm, uint16_t client);
/* Free every offer posted from VM vm, any client (ivsockd). @return how many. */
int ivsock_offer_release_vm(struct ivsock_region *rg, uint8_t vm);

bool ivsock_tuple_equal(const struct ivsock_tuple *a, const struct ivsock_tuple *b);

#endif
