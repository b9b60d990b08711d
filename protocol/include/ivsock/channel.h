/* SPDX-License-Identifier: MIT */
/*
 * Channels: one block (two rings, connector->acceptor and acceptor->connector,
 * each end's ctl page beside the data it writes) allocated from the
 * connector's partition of a size class, plus one end record per side.
 *
 * State machine (slot state; every move is one CAS on the slot word):
 *
 *   FREE -> INIT -> OFFERED --acceptor wins--> ACCEPTING --> CONNECTED
 *                     |                            |            |
 *                     |   (acceptor died here:     |            | ivsockd: the
 *                     |    its agent moves it) ----+            | connector's VM
 *                     v                            v            v was reclaimed
 *                  ABANDONED <---------------------+         REVOKED
 *   (connector fell back to TCP)
 *
 *   FREE -> INIT -> TCP -> FREE   a connection on TCP, listed and promotable
 *                                 (no block; its connector's agent frees it)
 *
 * The generation never changes between INIT and FREE: (idx, gen) names one
 * connection for its whole life, REVOKED included. Who frees: docs/layout.md
 * ("who frees"). In short: the connector frees OFFERED/ABANDONED; in
 * CONNECTED/REVOKED whoever closes last (each end marks itself CLOSED, a
 * full fence, then looks at the other end); nobody frees ACCEPTING: the
 * acceptor (or its agent, if it died there) moves it on and then the normal
 * rule applies. Nothing waits for anything.
 *
 * The block is freed before the slot, so a block is never free while a live
 * slot still names it; a block reference is used only if it lies in the
 * connector's partition (of any class) and its block slot has the expected
 * generation and owner.
 */
#ifndef IVSOCK_CHANNEL_H
#define IVSOCK_CHANNEL_H

#include "ivsock/layout.h"
#include "ivsock/ring.h"

enum ivsock_chan_side { IVSOCK_SIDE_CONNECTOR = 0, IVSOCK_SIDE_ACCEPTOR = 1 };

/* Identity of one end, as written into its ivsock_chan_end. */
struct ivsock_end_id {
	uint8_t vm;
	uint16_t client;
	uint32_t peer_id;
	uint32_t vector;
	uint32_t uid;       /* owner uid (recorded in the end, for monitors and limits) */
};

/* A process's validated view of its side of a channel. Private memory: the
 * block reference checked at accept (or at view_connector) is kept here and
 * ivsock_chan_close_view() uses it, never the shared copy again. The rings
 * and ctl pointers point wherever the block is mapped (the whole region, or
 * a window onto the block: ivsock_chan_view_block()). */
struct ivsock_chan_view {
	uint32_t idx, gen;
	int side;
	struct ivsock_ring tx;       /* we produce */
	struct ivsock_ring rx;       /* we consume */
	struct ivsock_end_id peer;   /* where to ring the other side (validated
				      * copy; acceptor's is read at attach) */
	uint32_t peer_vm_gen;
	uint32_t block_idx, block_gen; /* validated block reference (0, 0: unknown) */
	uint32_t ring_size;          /* the block's class */
	uint32_t ring_vm;            /* partition the block belongs to */
	struct ivsock_end_ctl *my_ctl;   /* our end's ctl page (we write it) */
	struct ivsock_end_ctl *peer_ctl; /* the other end's (read only) */
	uint32_t expect_peer_vm;     /* 1 + VM index the other end must be in
				      * (0: not known, e.g. a hand-built view) */
};

/*
 * Connector: claim a channel, allocate a block of class cls in our partition,
 * fill end[0] (uid included), the tuple, dst_vm (the VM owning t->dst as we
 * found it, IVSOCK_VM_NONE if unknown: the acceptor must be in it), ctl page
 * 0's doorbell words with holders = 1, and move to OFFERED. On failure
 * nothing stays claimed.
 * @return 0 with *idx and *gen, -ENOSPC (table or class quota full),
 *         -EINVAL (vm, cls or dst_vm out of range).
 */
int ivsock_chan_open(struct ivsock_region *rg, const struct ivsock_end_id *me,
		     const struct ivsock_tuple *t, uint32_t dst_vm, uint32_t cls,
		     uint32_t *idx, uint32_t *gen);

/* The destination VM a connector records (v3 behaviour): my_vm for a
 * loopback destination, else the VM whose directory entry holds t->dst,
 * else IVSOCK_VM_NONE. */
uint32_t ivsock_chan_dst_vm(const struct ivsock_region *rg, uint8_t my_vm,
			    const struct ivsock_tuple *t);

/*
 * Acceptor in VM me->vm: validate the channel an offer pointed to, win it
 * (OFFERED -> ACCEPTING), write end[1], publish CONNECTED, and fill view.
 * Refused without touching the channel when: the slot owner is not
 * expect_vm (the offer's poster), the connector recorded a destination VM
 * that is not me->vm, the connector's end is not the slot owner, the block
 * reference is outside the connector's partition, names a free block, or has
 * another generation or owner. Writes ctl page 1's doorbell words, holders = 1. @return 0, -ESTALE (gone or abandoned: use
 * TCP), -EACCES (the connection is meant for another VM), -EPROTO (garbage
 * from the connector), -EINVAL.
 */
int ivsock_chan_accept(struct ivsock_region *rg, uint32_t idx, uint32_t gen,
		       uint8_t expect_vm, const struct ivsock_end_id *me,
		       struct ivsock_chan_view *view);

/* Test hook: when set, called by ivsock_chan_accept() between its two state
 * changes (OFFERED -> ACCEPTING -> CONNECTED), e.g. to stop the acceptor in
 * exactly that window. NULL in production. */
extern void (*ivsock_chan_accepting_hook)(uint32_t idx);

/* Connector: attach the rings of our own channel into view. */
int ivsock_chan_view_connector(struct ivsock_region *rg, uint32_t idx, uint32_t gen,
			       struct ivsock_chan_view *view);

/*
 * Build a view of end `side` of channel (idx, gen) from its block mapped at
 * `block` anywhere (a window in a process that does not map the region):
 * attaches tx (we produce) and rx (we consume), sets my_ctl / peer_ctl.
 * block_idx, block_gen are left 0 (unknown), ring_vm IVSOCK_VM_NONE, peer.vm
 * IVSOCK_VM_NONE. @return 0, -EINVAL (bad size/side), -EPROTO (indices in
 * the block inconsistent).
 */
int ivsock_chan_view_block(struct ivsock_chan_view *v, void *block, uint32_t ring_size,
			   int side, uint32_t idx, uint32_t gen);

/*
 * The process's part of a close, touching only the block: EOF (or RESET)
 * on tx, RCLOSED on rx. The table part (end flags CLOSED, the last closer
 * frees) is ivsock_chan_close(), which does both. @return rings closed.
 */
int ivsock_chan_end_close_rings(struct ivsock_chan_view *v, bool reset);

/*
 * Where to ring the other end of v: the doorbell words of its ctl page
 * (validated <= 65535), else (rg given) its table record.
 * @return 0 or -EPROTO.
 */
int ivsock_chan_peer_doorbell(const struct ivsock_region *rg, const struct ivsock_chan_view *v,
			      uint32_t *peer_id, uint32_t *vector);

/*
 * Connector: read the acceptor's end once it is CONNECTED (for doorbells).
 * @return 0, -EAGAIN (still OFFERED), -ESTALE, -EPROTO.
 */
int ivsock_chan_learn_peer(struct ivsock_region *rg, struct ivsock_chan_view *view);

/* Connector: OFFERED -> ABANDONED. @return 0 (we own the fallback) or
 * -ESTALE (the acceptor attached first: keep using the rings). */
int ivsock_chan_abandon(struct ivsock_region *rg, uint32_t idx, uint32_t gen);

/*
 * State of channel (idx, gen), for a data path: ONE acquire load of the slot
 * word, no write, no syscall, no lock (inline). Contract:
 *   IVSOCK_CHAN_CONNECTED            the connection is good;
 *   IVSOCK_CHAN_DEMOTED              good, and ivsockd asked it to move to
 *                                    TCP: switch tx, drain rx, release;
 *   IVSOCK_CHAN_REVOKED              ivsockd withdrew it (the other end's VM
 *                                    was reclaimed): report a reset; the rings
 *                                    stay ours (not reused) until we close;
 *   0                                the slot is free or holds another
 *                                    generation: the channel is gone; report a
 *                                    reset and touch neither ring again;
 *   IVSOCK_CHAN_OFFERED/ACCEPTING    still connecting (connector only);
 *   IVSOCK_CHAN_ABANDONED            the connector owns a TCP fallback.
 * The acquire pairs with the release CAS of every state move, so what was
 * written before a move (end[1] before CONNECTED) is visible once it is seen.
 * The generation is stable from INIT to FREE (REVOKED keeps it), so a handle
 * (idx, gen) matches for the connection's whole life and never afterwards.
 */
static inline uint8_t ivsock_chan_state(const struct ivsock_region *rg, uint32_t idx,
					uint32_t gen)
{
	struct ivsock_slot_val v;

	if (idx >= rg->channel_cap)
		return 0;
	v = ivsock_slot_get(&rg->channels[idx].slot);
	return v.gen == gen ? v.state : 0;
}

/* Flags of the other end (IVSOCK_END_*), acquire. */
uint32_t ivsock_chan_peer_flags(const struct ivsock_region *rg, const struct ivsock_chan_view *v);

/*
 * Release our end: EOF (or reset) on our tx ring, RCLOSED on our rx ring,
 * CLOSED in our end flags; whoever closes last frees the block, then the
 * slot. Never waits: a channel in ACCEPTING is left to the acceptor, which
 * frees it when it closes. Safe to call on any state.
 * ivsock_chan_close() re-reads the block reference from the channel and
 * validates it (partition, generation); ivsock_chan_close_view() uses the
 * one validated at accept. @return 1 if we freed it, 0 if the other end
 * still holds it (or it is in flux), -ESTALE, -EINVAL.
 */
int ivsock_chan_close(struct ivsock_region *rg, uint32_t idx, uint32_t gen,
		      int side, bool reset);
int ivsock_chan_close_view(struct ivsock_region *rg, const struct ivsock_chan_view *v,
			   bool reset);

/* Add to our end's byte counters in its ctl page (relaxed; audited by
 * ivsockd). rg is not used (may be NULL). */
void ivsock_chan_count(struct ivsock_region *rg, const struct ivsock_chan_view *v,
		       uint64_t tx, uint64_t rx);

/*
 * For monitors (ivsockd, the agent's status): the ctl page of end `side` of
 * channel idx if the channel is live (past INIT) and its block reference is
 * valid (connector's partition, generation, owner), else NULL. *ring_size,
 * *block (if non-NULL) receive the block's class ring size and index.
 */
struct ivsock_end_ctl *ivsock_chan_end_ctl(const struct ivsock_region *rg, uint32_t idx,
					   int side, uint32_t *ring_size, uint32_t *block);

/* Doorbell callback used by bulk cleanup: ring (peer_id, vector). */
typedef void (*ivsock_ring_fn)(void *arg, uint32_t peer_id, uint32_t vector);

/*
 * A process died: close, with reset, every end owned by (vm, client) and ring
 * the surviving peers; free the channels it was opening (INIT), finish for
 * it an accept it died in (ACCEPTING -> ABANDONED: the connector falls back
 * without loss), and free the blocks it owned that no channel references any
 * more. Never waits. Used by the VM's agent. @return channels touched.
 */
int ivsock_chan_release_owner(struct ivsock_region *rg, uint8_t vm, uint16_t client,
			      ivsock_ring_fn ring, void *arg);

/*
 * ivsockd: ask both ends of CONNECTED channel (idx, gen) to move their
 * stream to TCP (CONNECTED -> DEMOTED), then ring both ends' doorbells.
 * @return 0, -ESTALE (no such channel), -EALREADY (demoted already),
 *         -EBUSY (not connected: offered, accepting, revoked), -EAGAIN
 *         (the slot moved meanwhile: ask again), -EINVAL.
 */
int ivsock_chan_demote(struct ivsock_region *rg, uint32_t idx, uint32_t gen,
		       ivsock_ring_fn ring, void *arg);
/* The same, asking for a new ring of ring_size once both directions are on
 * TCP (ring -> ring: resize_to; the connector then asks its agent for that
 * size at once, docs/switch.md). */
int ivsock_chan_resize(struct ivsock_region *rg, uint32_t idx, uint32_t gen, uint32_t ring_size,
		       ivsock_ring_fn ring, void *arg);
/* A VM died: same for every end in VM vm (used by ivsockd). */
int ivsock_chan_release_vm(struct ivsock_region *rg, uint8_t vm,
			   ivsock_ring_fn ring, void *arg);
/*
 * Dead VM vm is reclaimed (ivsockd, grace period over or nothing left):
 * every end of vm is closed with reset (as ivsock_chan_release_vm), channels
 * with no live end are freed (block, then slot), and a channel whose block
 * is in vm's partition but whose other end is still open in another VM is
 * moved to REVOKED (same generation), that end is rung, and its block stays
 * claimed until it closes (its close frees it): nothing is reused under a
 * survivor. Call before ivsock_block_release_vm(). @return channels freed or
 * revoked.
 */
int ivsock_chan_reclaim_vm(struct ivsock_region *rg, uint8_t vm,
			   ivsock_ring_fn ring, void *arg);
/*
 * Connector's agent: record a connection on TCP whose ends both run the
 * shim (docs/switch.md, "Connections on TCP"): claim a slot, fill end[0]
 * (ATTACHED), the tuple and dst_vm, no block (block_gen 0), and move it to
 * TCP. Freed by ivsock_chan_close() of the connector side, by the owner's
 * release, or the VM's. @return 0 with *idx, *gen, -ENOSPC, -EINVAL.
 */
int ivsock_chan_track(struct ivsock_region *rg, const struct ivsock_end_id *me,
		      const struct ivsock_tuple *t, uint32_t dst_vm, uint32_t *idx, uint32_t *gen);

/*
 * ivsockd: ask the connector of TCP entry (idx, gen) for a ring of
 * ring_size (0: its default): resize_to, then promote_req + 1 (release),
 * then ring the connector. @return 0, -ESTALE (no such entry), -EBUSY (not
 * a connection on TCP), -EINVAL.
 */
int ivsock_chan_promote_req(struct ivsock_region *rg, uint32_t idx, uint32_t gen,
			    uint32_t ring_size, ivsock_ring_fn ring, void *arg);

/* Channels with at least one end in VM vm (for partition reclaim). */
uint32_t ivsock_chan_count_vm(const struct ivsock_region *rg, uint8_t vm);

#endif
