/* SPDX-License-Identifier: MIT */
/*
 * Channels: two rings (connector->acceptor, acceptor->connector) allocated
 * from the connector's partition, plus one end record per side.
 *
 * State machine (slot state):
 *   FREE -> INIT -> OFFERED --accept--> CONNECTED --both ends closed--> FREE
 *                      |
 *                      +--abandon (connector falls back to TCP)--> ABANDONED -> FREE
 *   OFFERED/CONNECTED --ivsockd revokes--> REVOKED (ends drain, then close)
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
};

/* A process's validated view of its side of a channel. */
struct ivsock_chan_view {
	uint32_t idx, gen;
	int side;
	struct ivsock_ring tx;       /* we produce */
	struct ivsock_ring rx;       /* we consume */
	struct ivsock_end_id peer;   /* where to ring the other side (validated
				      * copy; acceptor's is read at attach) */
	uint32_t peer_vm_gen;
};

/*
 * Connector: claim a channel, allocate both rings in our partition, fill
 * end[0] and the tuple, move to OFFERED. On failure nothing stays claimed.
 * @return 0 with *idx and *gen, -ENOSPC (table or partition quota full).
 */
int ivsock_chan_open(struct ivsock_region *rg, const struct ivsock_end_id *me,
		     const struct ivsock_tuple *t, uint32_t *idx, uint32_t *gen);

/*
 * Acceptor: validate the channel an offer pointed to (its rings must belong
 * to the connector's partition), write end[1], CAS OFFERED -> CONNECTED, and
 * fill view. @return 0, -ESTALE (gone or abandoned: use TCP), -EPROTO
 * (garbage from the connector).
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
 * Connector: read the acceptor's end once it is CONNECTED (for doorbells).
 * @return 0, -EAGAIN (still OFFERED), -ESTALE, -EPROTO.
 */
int ivsock_chan_learn_peer(struct ivsock_region *rg, struct ivsock_chan_view *view);

/* Connector: OFFERED -> ABANDONED. @return 0 (we own the fallback) or
 * -ESTALE (the acceptor attached first: keep using the rings). */
int ivsock_chan_abandon(struct ivsock_region *rg, uint32_t idx, uint32_t gen);

/* Current state of (idx, gen), or 0 if the slot moved on. */
uint8_t ivsock_chan_state(const struct ivsock_region *rg, uint32_t idx, uint32_t gen);

/* Flags of the other end (IVSOCK_END_*), acquire. */
uint32_t ivsock_chan_peer_flags(const struct ivsock_region *rg, const struct ivsock_chan_view *v);

/*
 * Release our end: EOF (or reset) on our tx ring, RCLOSED on our rx ring,
 * CLOSED (| DEAD) in our end flags; whoever closes last frees the rings and
 * the slot. Safe to call on any state. @return 1 if we freed it, 0 if the
 * other end still holds it, -ESTALE.
 */
int ivsock_chan_close(struct ivsock_region *rg, uint32_t idx, uint32_t gen,
		      int side, bool reset);

/* Add to our end's byte counters (relaxed; audited by ivsockd). */
void ivsock_chan_count(struct ivsock_region *rg, const struct ivsock_chan_view *v,
		       uint64_t tx, uint64_t rx);

/* Doorbell callback used by bulk cleanup: ring (peer_id, vector). */
typedef void (*ivsock_ring_fn)(void *arg, uint32_t peer_id, uint32_t vector);

/*
 * A process died: close, with reset, every end owned by (vm, client) and ring
 * the surviving peers. Used by the VM's agent. @return ends closed.
 */
int ivsock_chan_release_owner(struct ivsock_region *rg, uint8_t vm, uint16_t client,
			      ivsock_ring_fn ring, void *arg);
/* A VM died: same for every end in VM vm (used by ivsockd). */
int ivsock_chan_release_vm(struct ivsock_region *rg, uint8_t vm,
			   ivsock_ring_fn ring, void *arg);
/*
 * Grace period over for dead VM vm: every channel whose rings live in vm's
 * partition (slot owner vm) is moved to REVOKED, the other end is rung if
 * it is still attached, and the slot is freed (ivsockd, before it frees the
 * partition with ivsock_ring_release_vm()). @return channels reclaimed.
 */
int ivsock_chan_reclaim_vm(struct ivsock_region *rg, uint8_t vm,
			   ivsock_ring_fn ring, void *arg);
/* Channels with at least one end in VM vm (for partition reclaim). */
uint32_t ivsock_chan_count_vm(const struct ivsock_region *rg, uint8_t vm);

#endif
