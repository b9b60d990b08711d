// SPDX-License-Identifier: MIT
/*
 * Ring -> TCP switching of a connected socket (docs/switch.md). Each
 * direction switches on its own at a byte offset: the producer publishes in
 * its ctl words (tx_switch) the ring index after its last ring byte and
 * writes the rest to the kernel socket; the consumer reads the ring up to
 * that index, then the kernel socket. Nothing is ever written into the TCP
 * stream but the program's bytes. When both directions are on TCP, the
 * channel is released and the socket is PLAIN.
 *
 * A switch is wanted when ivsockd moved the channel to DEMOTED, or when
 * the peer's tx went first (so that both ends let go of the channel).
 * Only the sole holder of an end switches its tx: holders in other
 * processes (fork) each write the ring from their own view, and none of
 * them could tell the others where the ring ends. Such an end keeps its
 * tx on the ring until it is the sole holder again; its rx follows the
 * peer regardless (the predicate is in shared memory).
 */
#include <errno.h>

#include "sock_int.h"

bool ivs_rx_on_tcp(struct ivs_sock *s)
{
	uint64_t sw = ivsock_load_acquire(&s->v.peer_ctl->tx_switch);

	/* The peer stores tx_switch after its last tail store (release):
	 * seen here, the tail is final; its index must be where we are. */
	return (sw & IVSOCK_SWITCH_TCP) &&
	       (uint32_t)sw == ivsock_ring_own_index(&s->v.rx) &&
	       ivsock_ring_snap_readable(&s->v.rx) == 0;
}

/* Publish where our tx leaves the ring (tx_lock held). */
static void switch_tx(struct ivs_sock *s)
{
	uint32_t at = ivsock_ring_own_index(&s->v.tx);
	int why = atomic_load(&s->demote);

	ivsock_store_relaxed(&s->v.my_ctl->resize_want,
			     why == IVSOCK_SWITCH_WHY_RESIZE ? s->promo_size : 0);
	ivsock_store_relaxed(&s->v.my_ctl->switch_reason, (uint32_t)why);
	/* the operator or a stall wants TCP: no promotion of our own after */
	if (why == IVSOCK_SWITCH_WHY_OPERATOR || why == IVSOCK_SWITCH_WHY_STALLED)
		s->promo_auto = false;
	atomic_store(&s->ptx, 0); /* still on TCP: the ring ends at index 0 */
	ivsock_store_release(&s->v.my_ctl->tx_switch, IVSOCK_SWITCH_TCP | at);
	atomic_store(&s->tx_tcp, 1);
	atomic_fetch_add(&s->event_seq, 1);
	ivs_count(IVS_C_SWITCH_TX_TCP, 1);
	if (why == IVSOCK_SWITCH_WHY_OPERATOR)
		ivs_count(IVS_C_SWITCH_OPERATOR, 1);
	else if (why == IVSOCK_SWITCH_WHY_PEER)
		ivs_count(IVS_C_SWITCH_PEER, 1);
	else if (why == IVSOCK_SWITCH_WHY_RESIZE)
		ivs_count(IVS_C_SWITCH_RESIZE, 1);
	else if (why == IVSOCK_SWITCH_WHY_RECLAIM)
		ivs_count(IVS_C_SWITCH_RECLAIM, 1);
	ivs_debug("channel %u: tx continues on TCP after ring index %u", s->v.idx, at);
	/* a consumer asleep on an empty ring re-checks */
	ivs_ring_peer(s);
}

static bool lock(pthread_mutex_t *m, bool try)
{
	if (try)
		return pthread_mutex_trylock(m) == 0;
	pthread_mutex_lock(m);
	return true;
}

bool ivs_switch_progress(struct ivs_sock *s, int fd, int locked, bool try)
{
	bool rx_held = locked & 1, tx_held = locked & 2, plain = false;

	if (atomic_load(&s->state) != IVS_ST_CONNECTED)
		return atomic_load(&s->state) == IVS_ST_PLAIN;
	if ((atomic_load(&s->ptx) || atomic_load(&s->prx)) && !atomic_load(&s->demote))
		ivs_promo_progress(s, fd);
	if (!atomic_load(&s->demote)) {
		int expect = 0;

		if (!(ivsock_load_acquire(&s->v.peer_ctl->tx_switch) & IVSOCK_SWITCH_TCP))
			return false;
		/* the peer went first: because of DEMOTED too (then ours says
		 * why, resize_to included)? */
		ivs_chan_revoked(s);
		/* a move to another ring the peer asked for itself: ours too */
		if (ivsock_load_relaxed(&s->v.peer_ctl->switch_reason) == IVSOCK_SWITCH_WHY_RESIZE &&
		    atomic_compare_exchange_strong(&s->demote, &expect, IVSOCK_SWITCH_WHY_RESIZE))
			s->promo_size = ivsock_load_relaxed(&s->v.peer_ctl->resize_want);
		expect = 0;
		atomic_compare_exchange_strong(&s->demote, &expect, IVSOCK_SWITCH_WHY_PEER);
	}
	/* Lock order: rx before tx (as the fallback). */
	if (!rx_held && tx_held)
		try = true;
	if (!rx_held && !(rx_held = lock(&s->rx_lock, try)))
		return false;
	if (!tx_held && !lock(&s->tx_lock, try)) {
		if (!(locked & 1))
			pthread_mutex_unlock(&s->rx_lock);
		return false;
	}
	if (atomic_load(&s->state) != IVS_ST_CONNECTED || atomic_load(&s->closed))
		goto out;
	ivs_sock_refresh(s);
	if (!atomic_load(&s->tx_tcp) && ivs_switch_ours(s))
		switch_tx(s);
	if (atomic_load(&s->tx_tcp) && ivs_rx_on_tcp(s) && ivs_switch_ours(s)) {
		ivs_count(IVS_C_SWITCH_RX_TCP, 1);
		ivs_count(IVS_C_DEMOTED, 1);
		ivs_debug("channel %u: both directions on TCP: released", s->v.idx);
		ivs_conn_release_switched(s, fd);
		plain = true;
	}
out:
	if (!(locked & 2))
		pthread_mutex_unlock(&s->tx_lock);
	if (!(locked & 1))
		pthread_mutex_unlock(&s->rx_lock);
	if (plain && !ivs_in_mux)
		ivs_mux_fd_plain(fd);
	return plain;
}
