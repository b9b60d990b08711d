// SPDX-License-Identifier: MIT
/*
 * Offers that come after the acceptor asked (docs/broker.md, "The late
 * offer"). The connector's agent connects the socket, then posts the offer;
 * the acceptor's ACCEPT may come in between (the connector's agent was
 * preempted), and finds no offer.
 *
 * - While the connector's agent's marker for that source and listener is
 *   posted (ivsock_offer_marked: it is connecting and will post), the
 *   ACCEPT is held (its reply deferred) for up to --accept-hold-us, looking
 *   for the offer every CHECK_NS: the connection is accelerated a little
 *   later. No marker (a plain TCP client), no wait.
 * - Otherwise, or when the hold runs out, the acceptor stays on TCP and the
 *   4-tuple is remembered for LATE_KEEP_NS: an offer that shows up after
 *   all is taken and abandoned, as an acceptor that fell back does, and the
 *   connector is rung: it moves to TCP (its bytes taken back from the ring)
 *   at once instead of waiting out its attach timeout.
 */
#include <errno.h>
#include <string.h>

#include "ivsock/channel.h"
#include "ivsock/directory.h"
#include "ivsock/offer.h"
#include "agent.h"
#include "broker.h"
#include "log.h"
#include "util.h"

#define CHECK_NS       (20ULL * 1000)               /* look again this often */
/* Longer than any delay of the connector's agent we expect, shorter than the
 * shim's attach timeout (1 s), after which the connector falls back anyway. */
#define LATE_KEEP_NS   (500ULL * 1000 * 1000)

static bool from_domain(struct agent *a, const struct ivsock_addr *src)
{
	return ivsock_addr_is_loopback(src) || ivsock_dir_find_addr(&a->be.rg, src) >= 0;
}

bool broker_hold_accept(struct agent *a, struct agent_client *c, uint32_t seq,
			const struct ivsock_tuple *t, uint64_t cookie)
{
	struct broker_held *h = NULL;

	if (!a->hold_ns || !ivsock_offer_marked(&a->be.rg, t, (uint8_t)a->be.vm_index))
		return false;
	for (unsigned i = 0; i < BROKER_HELD_MAX && !h; i++)
		if (!a->held[i].until_ns)
			h = &a->held[i];
	if (!h)
		return false;
	h->client = c->id;
	h->seq = seq;
	h->t = *t;
	h->cookie = cookie;
	h->until_ns = agent_now_ns() + a->hold_ns;
	a->nheld++;
	return true;
}

void broker_held_client_gone(struct agent *a, uint32_t client)
{
	for (unsigned i = 0; i < BROKER_HELD_MAX && a->nheld; i++)
		if (a->held[i].until_ns && a->held[i].client == client) {
			a->held[i].until_ns = 0;
			a->nheld--;
		}
}

void broker_refuse_offer(struct agent *a, uint32_t chan, uint32_t cgen)
{
	struct ivsock_region *rg = &a->be.rg;
	uint32_t peer_id, vector;

	if (chan >= rg->channel_cap)
		return;
	/* the connector's doorbell as it recorded it at open */
	peer_id = ivsock_ld32(&rg->channels[chan].end[0].peer_id);
	vector = ivsock_ld32(&rg->channels[chan].end[0].vector);
	if (ivsock_chan_abandon(rg, chan, cgen) == 0)
		agent_backend_ring(&a->be, peer_id, vector);
}

void broker_late_note(struct agent *a, const struct ivsock_tuple *t)
{
	struct broker_late *l;

	/* Only a connection from a VM of the domain can have an offer coming:
	 * any other stays unnoted (the common case of plain TCP clients). */
	if (!from_domain(a, &t->src))
		return;
	l = &a->late[a->late_next++ % BROKER_LATE_MAX];
	if (!l->until_ns)
		a->nlate++;
	l->t = *t;
	l->until_ns = agent_now_ns() + LATE_KEEP_NS;
}

static void check_held(struct agent *a, uint64_t now)
{
	struct ivsock_region *rg = &a->be.rg;

	for (unsigned i = 0; i < BROKER_HELD_MAX && a->nheld; i++) {
		struct broker_held *h = &a->held[i];
		struct agent_client *c;
		uint32_t chan = 0, cgen = 0;
		uint8_t owner = 0;
		int rc;

		if (!h->until_ns)
			continue;
		rc = ivsock_offer_take_as(rg, &h->t, (uint8_t)a->be.vm_index, &chan, &cgen, &owner);
		/* wait while the connector's agent is still at it (its marker);
		 * it posts the offer before it removes the marker, so once the
		 * marker is gone one more look is enough */
		if (rc == -ENOENT && now < h->until_ns) {
			if (ivsock_offer_marked(rg, &h->t, (uint8_t)a->be.vm_index))
				continue;
			rc = ivsock_offer_take_as(rg, &h->t, (uint8_t)a->be.vm_index, &chan,
						  &cgen, &owner);
		}
		h->until_ns = 0;
		a->nheld--;
		if (rc < 0 && rc != -ENOENT)
			broker_late_note(a, &h->t); /* listener gone: refuse it */
		c = broker_client_by_id(a, h->client);
		if (!c) {
			if (rc == 0)
				broker_refuse_offer(a, chan, cgen);
			continue;
		}
		if (rc == 0)
			a->stats.held_accepts++;
		broker_accept_finish(a, c, h->seq, rc, &h->t, h->cookie, chan, cgen, owner);
	}
}

static void check_late(struct agent *a, uint64_t now)
{
	struct ivsock_region *rg = &a->be.rg;

	for (unsigned i = 0; i < BROKER_LATE_MAX && a->nlate; i++) {
		struct broker_late *l = &a->late[i];
		uint32_t chan, cgen;
		uint8_t owner;

		if (!l->until_ns)
			continue;
		if (now > l->until_ns) {
			l->until_ns = 0;
			a->nlate--;
			continue;
		}
		/* our listener may be gone meanwhile: the connection is ours */
		if (ivsock_offer_take_refused(rg, &l->t, (uint8_t)a->be.vm_index, &chan, &cgen,
					      &owner) < 0)
			continue;
		l->until_ns = 0;
		a->nlate--;
		a->stats.late_offers++;
		broker_refuse_offer(a, chan, cgen);
	}
}

uint64_t broker_pending_check(struct agent *a)
{
	uint64_t now;

	if (!a->nheld && !a->nlate)
		return 0;
	now = agent_now_ns();
	check_held(a, now);
	check_late(a, now);
	return a->nheld ? CHECK_NS : a->nlate ? 1000ULL * 1000 : 0;
}
