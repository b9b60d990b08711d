// SPDX-License-Identifier: MIT
/* The broker requests (docs/broker.md): LISTEN, UNLISTEN, OPEN, ACCEPT,
 * ABANDON, CLOSE, ATTACH, PORT, TRACK. Every request that acts on a connection carries
 * the socket; its addresses and identity (SO_COOKIE) come from the kernel. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "ivsock/channel.h"
#include "ivsock/directory.h"
#include "ivsock/ivsock_dev.h"
#include "ivsock/listener.h"
#include "ivsock/offer.h"
#include "agent.h"
#include "broker.h"
#include "log.h"
#include "util.h"

static int send_reply(struct agent_client *c, uint16_t type, uint32_t seq, int32_t status,
		      const void *payload, uint32_t len, int fd)
{
	return agent_reply(c, type, seq, status, payload, len, fd >= 0 ? &fd : NULL,
			   fd >= 0 ? 1 : 0);
}

/* ---- per-uid accounting: sums over the clients of a uid ---- */

struct agent_client *broker_client_by_id(struct agent *a, uint32_t id)
{
	for (struct agent_client *c = a->clients; c; c = c->next)
		if (c->hello && c->id == id)
			return c;
	return NULL;
}

struct uid_use {
	uint32_t ends, listeners;
	uint32_t blocks[IVSOCK_CLASS_MAX];
};

static void uid_usage(struct agent *a, uid_t uid, struct uid_use *u)
{
	memset(u, 0, sizeof(*u));
	for (struct agent_client *c = a->clients; c; c = c->next) {
		if (c->uid != uid)
			continue;
		u->ends += c->ends;
		u->listeners += c->listeners;
		for (int k = 0; k < IVSOCK_CLASS_MAX; k++)
			u->blocks[k] += c->blocks[k];
	}
}

/* May c's uid take one more end (and, if cls >= 0, one more block of
 * class cls)? @return 0 or -EDQUOT. */
static int within_limits(struct agent *a, struct agent_client *c, int cls)
{
	const struct broker_limits *l = &a->limits;
	struct uid_use u;

	if (c->uid == 0)
		return 0;
	uid_usage(a, c->uid, &u);
	if (l->max_chans && u.ends >= l->max_chans)
		return -EDQUOT;
	if (cls >= 0 && l->ring_share && l->ring_share < 100) {
		uint64_t quota = a->be.rg.class[cls].blocks_per_vm;
		uint64_t cap = quota * l->ring_share / 100;

		if (cap < 1)
			cap = 1;
		if (u.blocks[cls] >= cap)
			return -EDQUOT;
	}
	return 0;
}

static void charge(struct agent_client *c, int cls, int sign)
{
	if (!c)
		return;
	if (sign > 0) {
		c->ends++;
		if (cls >= 0)
			c->blocks[cls]++;
		return;
	}
	if (c->ends)
		c->ends--;
	if (cls >= 0 && c->blocks[cls])
		c->blocks[cls]--;
}

/* ---- windows ---- */

static void block_range(struct agent *a, uint32_t block, uint64_t *off, uint64_t *len)
{
	const struct ivsock_region *rg = &a->be.rg;
	int cls = ivsock_region_block_class(rg, block);

	*off = ivsock_region_block_off(rg, block);
	*len = cls < 0 ? 0 : rg->class[cls].block_size;
}

/* No process of this VM can reach block any more (pci: the kernel zaps
 * every window onto it; server: nothing is enforced, docs/lab.md). */
static void revoke_block(struct agent *a, uint32_t block);

/*
 * End `side` of ch is released: revoke this VM's windows onto its block,
 * unless the other end is in this VM too and still open (a connection
 * inside one VM: both windows are ours and the kernel revokes by range;
 * the second close revokes both).
 */
static void revoke_end(struct agent *a, struct ivsock_channel *ch, int side)
{
	uint32_t other = ivsock_ld32(&ch->end[!side].vm_index);
	uint32_t fl = ivsock_load_acquire(&ch->end[!side].flags);

	if (other == a->be.vm_index && (fl & IVSOCK_END_ATTACHED) &&
	    !(fl & (IVSOCK_END_CLOSED | IVSOCK_END_DEAD)))
		return;
	revoke_block(a, ivsock_ld32(&ch->block));
}

static void revoke_block(struct agent *a, uint32_t block)
{
	uint64_t off, len;

	block_range(a, block, &off, &len);
	if (len && a->be.ops->revoke)
		a->be.ops->revoke(&a->be, off, len);
}

/* Fill r for end `side` of channel (idx, gen) on block, and cut the window
 * (*wfd, -1 on the server backend). */
static int grant(struct agent *a, uint32_t idx, uint32_t gen, int side, uint32_t block,
		 uint32_t peer_vm, struct ivsock_ag_chan *r, int *wfd)
{
	const struct ivsock_region *rg = &a->be.rg;
	int cls = ivsock_region_block_class(rg, block);
	struct ivsock_vm_info vi;
	uint64_t off, len;
	uint32_t ring_peer = IVSOCK_WIN_NO_RING;
	int rc;

	*wfd = -1;
	if (cls < 0)
		return -EPROTO;
	block_range(a, block, &off, &len);
	if (peer_vm < rg->vm_cap && ivsock_dir_read(rg, peer_vm, &vi) == 0)
		ring_peer = vi.peer_id;
	memset(r, 0, sizeof(*r));
	r->channel = idx;
	r->channel_gen = gen;
	r->side = (uint32_t)side;
	r->ring_size = rg->class[cls].ring_size;
	r->block_len = len;
	r->peer_vm = peer_vm;
	r->peer_id = r->peer_vector = 0xffffffffU;
	rc = a->be.ops->window(&a->be, off, len, ivsock_block_half_off(r->ring_size, side),
			       ivsock_block_half_len(r->ring_size), ring_peer, wfd);
	if (rc < 0)
		return rc;
	r->block_off = *wfd >= 0 ? 0 : off;
	return 0;
}

/* ---- ownership of an end ---- */

/*
 * Is client c allowed to act on end `side` of channel (idx, gen)? The end
 * must be of this VM and live; c must be the client that holds it, or
 * prove it holds the socket (sock with the recorded cookie: a forked or
 * exec'd holder talks through its own connection).
 * @return 0 with *chp set, -ESTALE (no such end any more), -EPERM.
 */
static int owns_end(struct agent *a, struct agent_client *c, const struct ivsock_ag_chan_ref *ref,
		    int sock, struct ivsock_channel **chp)
{
	struct ivsock_region *rg = &a->be.rg;
	struct ivsock_channel *ch;
	struct ivsock_slot_val sv;
	struct broker_sock bs;
	uint32_t vm, client;
	uint64_t cookie;

	if (ref->channel >= rg->channel_cap || ref->side > 1)
		return -EINVAL;
	ch = &rg->channels[ref->channel];
	sv = ivsock_slot_get(&ch->slot);
	if (sv.gen != ref->channel_gen || sv.state == IVSOCK_SLOT_FREE)
		return -ESTALE;
	vm = ivsock_ld32(&ch->end[ref->side].vm_index);
	client = ivsock_ld32(&ch->end[ref->side].client);
	cookie = __atomic_load_n(&ch->end[ref->side].cookie, __ATOMIC_RELAXED);
	if (vm != a->be.vm_index)
		return -EPERM;
	/* an end released already is gone for good (a second CLOSE must not
	 * give its owner the quota back twice) */
	if (ivsock_load_acquire(&ch->end[ref->side].flags) & (IVSOCK_END_CLOSED | IVSOCK_END_DEAD))
		return -ESTALE;
	*chp = ch;
	if (client == c->id && sock < 0)
		return 0;
	if (sock >= 0 && broker_sock_inspect(sock, &bs) == 0 && bs.cookie == cookie)
		return 0;
	return client == c->id ? 0 : -EPERM;
}

/* ---- requests ---- */

static void do_listen(struct agent *a, struct agent_client *c, uint32_t seq,
		      const struct ivsock_ag_listen *req, int sock)
{
	struct ivsock_ag_listen_reply r = { 0 };
	struct broker_sock bs;
	int rc, idx;

	rc = req->flags || req->reserved ? -EINVAL : broker_sock_inspect(sock, &bs);
	if (rc == 0 && !bs.listening)
		rc = -EINVAL;
	if (rc == 0 && c->uid != 0 && a->limits.max_listeners) {
		struct uid_use u;

		uid_usage(a, c->uid, &u);
		if (u.listeners >= a->limits.max_listeners)
			rc = -EDQUOT;
	}
	if (rc == 0) {
		idx = ivsock_listener_add(&a->be.rg, (uint8_t)a->be.vm_index, (uint16_t)c->id,
					  &bs.local, bs.lport,
					  bs.v6only ? IVSOCK_LISTENER_V6ONLY : 0, &r.listener_gen);
		if (idx < 0) {
			rc = idx;
		} else {
			r.listener = (uint32_t)idx;
			c->listeners++;
		}
	}
	send_reply(c, IVSOCK_AG_LISTEN_REPLY, seq, rc, rc ? NULL : &r, rc ? 0 : sizeof(r), -1);
}

static void do_unlisten(struct agent *a, struct agent_client *c,
			const struct ivsock_ag_listener_ref *ref)
{
	struct ivsock_region *rg = &a->be.rg;
	struct ivsock_slot_val sv;

	if (ref->listener >= rg->listener_cap)
		return;
	sv = ivsock_slot_get(&rg->listeners[ref->listener].slot);
	/* only the registering client removes it (a forked holder's listener
	 * goes with the registering process) */
	if (sv.gen != ref->listener_gen || sv.vm != a->be.vm_index || sv.client != c->id)
		return;
	if (ivsock_listener_remove(rg, ref->listener, ref->listener_gen) == 0 && c->listeners)
		c->listeners--;
}

static int class_for(const struct ivsock_region *rg, uint32_t want)
{
	uint32_t k;

	if (want == IVSOCK_AG_CLASS_DEFAULT)
		return (int)rg->default_class;
	if (want < rg->nclasses)
		return (int)want;
	if (want >= IVSOCK_BLOCK_RING_MIN) { /* a ring size */
		for (k = 0; k < rg->nclasses; k++)
			if (rg->class[k].ring_size >= want)
				return (int)k;
		return (int)rg->nclasses - 1;
	}
	return (int)rg->default_class;
}

/*
 * Open a channel in the class asked for (or the default) or, when that class
 * is used up (the VM's quota or the uid's share of it), in the next larger
 * class that has room, then in a smaller one of at least
 * FALLBACK_RING_MIN (docs/classes.md). Never smaller than that unasked: a
 * program may write more before it reads than two small rings hold where
 * TCP's buffers would have taken it (an echo client writing 1 MiB before
 * reading stalls on 1 KiB rings); such a connection is better on TCP.
 * @return 0 (*cls, *idx, *gen set) or the error of the class asked for.
 */
#define FALLBACK_RING_MIN (128U * 1024)

static int open_in_some_class(struct agent *a, struct agent_client *c,
			      const struct ivsock_end_id *me, const struct ivsock_tuple *t,
			      uint8_t vm, uint32_t want, int *cls, uint32_t *idx, uint32_t *gen)
{
	struct ivsock_region *rg = &a->be.rg;
	int first = class_for(rg, want), order[IVSOCK_CLASS_MAX], n = 0, rc0 = 0;

	order[n++] = first;
	for (int k = first + 1; k < (int)rg->nclasses; k++)
		order[n++] = k;
	for (int k = first - 1; k >= 0 && rg->class[k].ring_size >= FALLBACK_RING_MIN; k--)
		order[n++] = k;
	for (int i = 0; i < n; i++) {
		int rc;

		if (!rg->class[order[i]].blocks_per_vm)
			continue;
		rc = within_limits(a, c, order[i]);
		if (rc == 0)
			rc = ivsock_chan_open(rg, me, t, vm, (uint32_t)order[i], idx, gen);
		if (rc == 0) {
			*cls = order[i];
			return 0;
		}
		if (i == 0)
			rc0 = rc;
		/* only a full class is worth another try */
		if (rc != -ENOSPC && rc != -EDQUOT)
			return rc0;
	}
	return rc0;
}

static void do_open(struct agent *a, struct agent_client *c, uint32_t seq,
		    const struct ivsock_ag_open *req, int sock)
{
	struct ivsock_region *rg = &a->be.rg;
	struct ivsock_end_id me = {
		.vm = (uint8_t)a->be.vm_index, .client = (uint16_t)c->id,
		.peer_id = a->be.peer_id, .vector = c->vector, .uid = c->uid,
	};
	struct ivsock_ag_chan r;
	struct broker_sock bs;
	struct ivsock_tuple t;
	bool mark = req->flags & IVSOCK_AG_OPEN_MARK;
	uint32_t idx = 0, gen = 0, ogen = 0;
	int rc, vm, cls = -1, wfd = -1, oidx;

	memset(&t, 0, sizeof(t));
	rc = req->flags & ~IVSOCK_AG_OPEN_MARK ? -EINVAL : broker_sock_inspect(sock, &bs);
	/* MARK: not connected yet (the caller connects it, then sends PORT).
	 * Otherwise bound to its port, and not connected yet, connecting or
	 * just connected to the destination it names: nothing later, nothing
	 * else. */
	if (rc == 0 && mark && bs.state != TCP_CLOSE)
		rc = -EINVAL;
	if (rc == 0 && !mark &&
	    (!bs.lport || (bs.state != TCP_CLOSE && bs.state != TCP_SYN_SENT &&
			   bs.state != TCP_ESTABLISHED)))
		rc = -EINVAL;
	if (rc == 0 && bs.connected &&
	    (bs.pport != req->dport || !ivsock_addr_equal(&bs.peer, &req->dst)))
		rc = -EINVAL;
	if (rc < 0)
		goto fail;
	/* bound to a wildcard address: the source is the route's, as the
	 * kernel will pick it at connect (same network namespace as ours) */
	if (ivsock_addr_is_any(&bs.local) &&
	    (rc = broker_route_source(&req->dst, req->dport, &bs.local)) < 0)
		goto fail;
	t.src = bs.local;
	t.sport = mark ? 0 : bs.lport; /* a marker until PORT */
	t.dst = req->dst;
	t.dport = req->dport;
	if (t.dst.family != t.src.family || !t.dport) {
		rc = -EINVAL;
		goto fail;
	}
	vm = ivsock_addr_is_loopback(&t.dst) ? (int)a->be.vm_index : ivsock_dir_find_addr(rg, &t.dst);
	if (vm < 0) {
		rc = -EHOSTUNREACH;
		goto fail;
	}
	if (ivsock_listener_find(rg, (uint32_t)vm, &t.dst, t.dport) < 0) {
		rc = -ECONNREFUSED;
		goto fail;
	}
	rc = open_in_some_class(a, c, &me, &t, (uint8_t)vm, req->size_class, &cls, &idx, &gen);
	if (rc < 0)
		goto fail;
	__atomic_store_n(&rg->channels[idx].end[0].cookie, bs.cookie, __ATOMIC_RELAXED);
	/* MARK: t has port 0, a marker nobody takes (docs/broker.md) */
	oidx = ivsock_offer_post(rg, me.vm, me.client, &t, idx, gen, &ogen);
	if (oidx < 0) {
		rc = oidx;
		goto undo;
	}
	ivsock_st32(&rg->channels[idx].offer, (uint32_t)oidx);
	ivsock_st32(&rg->channels[idx].offer_gen, ogen);
	rc = grant(a, idx, gen, IVSOCK_SIDE_CONNECTOR, ivsock_ld32(&rg->channels[idx].block),
		   (uint32_t)vm, &r, &wfd);
	if (rc < 0) {
		ivsock_offer_cancel(rg, (uint32_t)oidx, ogen);
		goto undo;
	}
	rc = send_reply(c, IVSOCK_AG_CHAN_REPLY, seq, 0, &r, sizeof(r), wfd);
	if (wfd >= 0)
		close(wfd);
	if (rc < 0) {
		/* the client cannot hear us (gone or its buffer full): it
		 * falls back on its own; take everything back */
		ivsock_chan_abandon(rg, idx, gen);
		ivsock_offer_cancel(rg, (uint32_t)oidx, ogen);
		revoke_block(a, ivsock_ld32(&rg->channels[idx].block));
		ivsock_chan_close(rg, idx, gen, IVSOCK_SIDE_CONNECTOR, false);
		return;
	}
	charge(c, cls, +1);
	a->stats.opened++;
	return;
undo:
	ivsock_chan_close(rg, idx, gen, IVSOCK_SIDE_CONNECTOR, false);
fail:
	a->stats.refused_open++;
	send_reply(c, IVSOCK_AG_CHAN_REPLY, seq, rc, NULL, 0, -1);
}

/* TCP entries this VM (and, for a non-root uid, that uid) may hold: a
 * quarter of the channel table for the VM, half of that for one uid, so
 * that entries never crowd out channels with rings (docs/switch.md,
 * "Connections on TCP"). */
static int track_limits(struct agent *a, struct agent_client *c)
{
	uint32_t vm_cap = a->be.rg.channel_cap / 4, all = 0, uid = 0;

	for (struct agent_client *o = a->clients; o; o = o->next) {
		all += o->tracked;
		if (o->uid == c->uid)
			uid += o->tracked;
	}
	if (all >= vm_cap)
		return -ENOSPC;
	if (c->uid != 0 && uid >= vm_cap / 2)
		return -EDQUOT;
	return 0;
}

/* A TCP entry of ours for this socket already (same 4-tuple and cookie)?
 * @return its index, or -1. */
static int tracked_already(struct agent *a, const struct ivsock_tuple *t, uint64_t cookie,
			   uint32_t *gen)
{
	struct ivsock_region *rg = &a->be.rg;

	for (uint32_t i = 0; i < rg->channel_cap; i++) {
		struct ivsock_channel *ch = &rg->channels[i];
		struct ivsock_slot_val v = ivsock_slot_get(&ch->slot);

		if (v.state != IVSOCK_CHAN_TCP || v.vm != a->be.vm_index ||
		    __atomic_load_n(&ch->end[0].cookie, __ATOMIC_RELAXED) != cookie ||
		    ch->tuple.sport != t->sport || ch->tuple.dport != t->dport)
			continue;
		*gen = v.gen;
		return (int)i;
	}
	return -1;
}

/*
 * TRACK: an established socket of the client, to a VM of the domain (or
 * us), stays on TCP: record it as a TCP entry. The 4-tuple comes from the
 * socket; nothing is mapped. Idempotent for one socket.
 */
static void do_track(struct agent *a, struct agent_client *c, uint32_t seq,
		     const struct ivsock_ag_open *req, int *sockp)
{
	int sock = *sockp;
	struct ivsock_region *rg = &a->be.rg;
	struct ivsock_end_id me = {
		.vm = (uint8_t)a->be.vm_index, .client = (uint16_t)c->id,
		.peer_id = a->be.peer_id, .vector = c->vector, .uid = c->uid,
	};
	struct ivsock_ag_chan r;
	struct broker_sock bs;
	struct ivsock_tuple t;
	uint32_t idx = 0, gen = 0;
	int rc, vm, old;

	memset(&t, 0, sizeof(t));
	rc = req->flags || req->size_class ? -EINVAL : broker_sock_inspect(sock, &bs);
	if (rc == 0 && (bs.state != TCP_ESTABLISHED || !bs.connected || !bs.lport ||
			bs.pport != req->dport || !ivsock_addr_equal(&bs.peer, &req->dst)))
		rc = -EINVAL;
	if (rc < 0)
		goto fail;
	t.src = bs.local;
	t.sport = bs.lport;
	t.dst = req->dst;
	t.dport = req->dport;
	vm = ivsock_addr_is_loopback(&t.dst) ? (int)a->be.vm_index : ivsock_dir_find_addr(rg, &t.dst);
	if (vm < 0) {
		rc = -EHOSTUNREACH;
		goto fail;
	}
	if ((old = tracked_already(a, &t, bs.cookie, &gen)) >= 0) {
		idx = (uint32_t)old;
	} else {
		if ((rc = track_limits(a, c)) < 0 ||
		    (rc = ivsock_chan_track(rg, &me, &t, (uint32_t)vm, &idx, &gen)) < 0)
			goto fail;
		__atomic_store_n(&rg->channels[idx].end[0].cookie, bs.cookie, __ATOMIC_RELAXED);
	}
	/* Our copy of the socket goes before the answer: the program may
	 * close it at once, and a copy of ours would keep its epoll
	 * registrations alive after that close. */
	close(sock);
	*sockp = -1;
	memset(&r, 0, sizeof(r));
	r.channel = idx;
	r.channel_gen = gen;
	r.side = IVSOCK_SIDE_CONNECTOR;
	r.peer_vm = (uint32_t)vm;
	r.peer_id = r.peer_vector = 0xffffffffU;
	if (send_reply(c, IVSOCK_AG_CHAN_REPLY, seq, 0, &r, sizeof(r), -1) < 0) {
		/* the client cannot hear us (gone, or its buffer full): it
		 * does not know the entry, so nobody would free it */
		if (old < 0)
			ivsock_chan_close(rg, idx, gen, IVSOCK_SIDE_CONNECTOR, false);
		return;
	}
	if (old < 0) {
		c->tracked++;
		a->stats.tracked++;
	}
	return;
fail:
	a->stats.refused_track++;
	send_reply(c, IVSOCK_AG_CHAN_REPLY, seq, rc, NULL, 0, -1);
}

/*
 * PORT: the socket of an OPEN_MARK channel is connecting now (its own
 * connect(), the kernel picked the port): post the offer under the real
 * 4-tuple, then drop the marker (in that order: an acceptor held on the
 * marker looks once more when it is gone). The socket must be the one of
 * the OPEN (cookie). Anything wrong abandons the channel and rings the
 * connector, which moves to TCP. One way.
 */
static void do_port(struct agent *a, struct agent_client *c, const struct ivsock_ag_chan_ref *ref,
		    int sock)
{
	struct ivsock_region *rg = &a->be.rg;
	struct ivsock_channel *ch;
	struct broker_sock bs;
	struct ivsock_tuple t;
	uint32_t mark_idx, mark_gen, ogen = 0;
	int rc, oidx = -1;

	if (ref->side != IVSOCK_SIDE_CONNECTOR || sock < 0 || owns_end(a, c, ref, sock, &ch) < 0) {
		a->stats.bad_port++;
		return;
	}
	if (a->test_open_delay_ns) {
		/* test hook: the acceptor may now ask before our offer */
		struct timespec ts = { .tv_sec = (time_t)(a->test_open_delay_ns / 1000000000ULL),
				       .tv_nsec = (long)(a->test_open_delay_ns % 1000000000ULL) };

		nanosleep(&ts, NULL);
	}
	ivsock_copy_from_shared(&t, &ch->tuple, sizeof(t));
	mark_idx = ivsock_ld32(&ch->offer);
	mark_gen = ivsock_ld32(&ch->offer_gen);
	/* still waiting for its offer: not abandoned, not taken */
	rc = ivsock_slot_get(&ch->slot).state == IVSOCK_CHAN_OFFERED
		     ? broker_sock_inspect(sock, &bs) : -ESTALE;
	if (rc == 0 && (t.sport || bs.cookie != __atomic_load_n(&ch->end[0].cookie,
								 __ATOMIC_RELAXED) ||
			!bs.lport || (bs.state != TCP_SYN_SENT && bs.state != TCP_ESTABLISHED) ||
			(bs.connected && (bs.pport != t.dport ||
					  !ivsock_addr_equal(&bs.peer, &t.dst)))))
		rc = -EINVAL;
	if (rc == 0) {
		t.src = bs.local;
		t.sport = bs.lport;
		ivsock_copy_to_shared(&ch->tuple, &t, sizeof(t)); /* for monitors */
		oidx = ivsock_offer_post(rg, (uint8_t)a->be.vm_index, (uint16_t)c->id, &t,
					 ref->channel, ref->channel_gen, &ogen);
		rc = oidx < 0 ? oidx : 0;
	}
	if (rc == 0) {
		ivsock_st32(&ch->offer, (uint32_t)oidx);
		ivsock_st32(&ch->offer_gen, ogen);
	}
	ivsock_offer_cancel(rg, mark_idx, mark_gen);
	if (rc < 0) {
		a->stats.bad_port++;
		broker_refuse_offer(a, ref->channel, ref->channel_gen);
	}
}

/* The end of an ACCEPT for t (the accepted socket's cookie): the offer
 * (chan, cgen) posted by owner was taken (rc 0), or rc says why not. */
void broker_accept_finish(struct agent *a, struct agent_client *c, uint32_t seq, int rc,
			  const struct ivsock_tuple *t, uint64_t cookie, uint32_t chan,
			  uint32_t cgen, uint8_t owner)
{
	struct ivsock_region *rg = &a->be.rg;
	struct ivsock_end_id me = {
		.vm = (uint8_t)a->be.vm_index, .client = (uint16_t)c->id,
		.peer_id = a->be.peer_id, .vector = c->vector, .uid = c->uid,
	};
	struct ivsock_chan_view v;
	struct ivsock_ag_chan r;
	int wfd = -1;

	if (rc == -ENOENT)
		broker_late_note(a, t); /* its agent may not have posted it yet */
	if (rc < 0)
		goto fail;
	rc = within_limits(a, c, -1);
	if (rc == 0)
		rc = ivsock_chan_accept(rg, chan, cgen, owner, &me, &v);
	if (rc < 0) {
		/* tell the connector now rather than after its timeout */
		broker_refuse_offer(a, chan, cgen);
		goto fail;
	}
	__atomic_store_n(&rg->channels[chan].end[1].cookie, cookie, __ATOMIC_RELAXED);
	rc = grant(a, chan, cgen, IVSOCK_SIDE_ACCEPTOR, v.block_idx, owner, &r, &wfd);
	if (rc == 0) {
		r.peer_id = v.peer.peer_id;
		r.peer_vector = v.peer.vector;
		rc = send_reply(c, IVSOCK_AG_CHAN_REPLY, seq, 0, &r, sizeof(r), wfd);
	}
	if (wfd >= 0)
		close(wfd);
	if (rc < 0) {
		revoke_block(a, v.block_idx);
		ivsock_chan_close_view(rg, &v, true);
		agent_backend_ring(&a->be, v.peer.peer_id, v.peer.vector);
		if (rc != -EPIPE && rc != -ECONNRESET)
			send_reply(c, IVSOCK_AG_CHAN_REPLY, seq, rc, NULL, 0, -1);
		return;
	}
	charge(c, -1, +1);
	a->stats.accepted++;
	/* the connector may be waiting to learn that we are here */
	agent_backend_ring(&a->be, v.peer.peer_id, v.peer.vector);
	return;
fail:
	a->stats.refused_accept++;
	send_reply(c, IVSOCK_AG_CHAN_REPLY, seq, rc, NULL, 0, -1);
}

static void do_accept(struct agent *a, struct agent_client *c, uint32_t seq, int sock)
{
	struct broker_sock bs;
	struct ivsock_tuple t;
	uint32_t chan = 0, cgen = 0;
	uint8_t owner = 0;
	int rc;

	memset(&t, 0, sizeof(t));
	rc = broker_sock_inspect(sock, &bs);
	if (rc == 0 && (bs.listening || !bs.connected))
		rc = -EINVAL;
	if (rc == 0) {
		/* the connector's view of the 4-tuple: source = our peer */
		t.src = bs.peer;
		t.sport = bs.pport;
		t.dst = bs.local;
		t.dport = bs.lport;
		rc = ivsock_offer_take_as(&a->be.rg, &t, (uint8_t)a->be.vm_index, &chan, &cgen,
					  &owner);
		/* the connector's agent may be a little behind: wait for it
		 * while its marker says it is connecting; without a marker,
		 * one more look (it posts the offer, then drops the marker) */
		if (rc == -ENOENT) {
			if (broker_hold_accept(a, c, seq, &t, bs.cookie))
				return;
			rc = ivsock_offer_take_as(&a->be.rg, &t, (uint8_t)a->be.vm_index, &chan,
						  &cgen, &owner);
		}
	}
	broker_accept_finish(a, c, seq, rc, &t, bs.cookie, chan, cgen, owner);
}

static void do_abandon(struct agent *a, struct agent_client *c, uint32_t seq,
		       const struct ivsock_ag_chan_ref *ref, int sock)
{
	struct ivsock_region *rg = &a->be.rg;
	struct ivsock_channel *ch;
	int rc;

	rc = ref->side != IVSOCK_SIDE_CONNECTOR ? -EINVAL : owns_end(a, c, ref, sock, &ch);
	if (rc == 0) {
		rc = ivsock_chan_abandon(rg, ref->channel, ref->channel_gen);
		/* the offer goes either way: if it is still posted nobody took it */
		ivsock_offer_cancel(rg, ivsock_ld32(&ch->offer), ivsock_ld32(&ch->offer_gen));
	}
	send_reply(c, IVSOCK_AG_ABANDON_REPLY, seq, rc, NULL, 0, -1);
}

static void do_close(struct agent *a, struct agent_client *c,
		     const struct ivsock_ag_chan_ref *ref, int sock)
{
	struct ivsock_region *rg = &a->be.rg;
	struct ivsock_channel *ch;
	struct agent_client *owner;
	uint32_t block;
	int cls;

	if (owns_end(a, c, ref, sock, &ch) < 0) {
		a->stats.bad_close++;
		return;
	}
	if (ivsock_slot_get(&ch->slot).state == IVSOCK_CHAN_TCP) {
		/* a TCP entry: no block, no window, no offer; only its
		 * connector's CLOSE frees it */
		owner = broker_client_by_id(a, ivsock_ld32(&ch->end[0].client));
		if (ref->side == IVSOCK_SIDE_CONNECTOR &&
		    ivsock_chan_close(rg, ref->channel, ref->channel_gen, 0, false) > 0 &&
		    owner && owner->tracked)
			owner->tracked--;
		return;
	}
	block = ivsock_ld32(&ch->block);
	cls = ivsock_region_block_class(rg, block);
	owner = broker_client_by_id(a, ivsock_ld32(&ch->end[ref->side].client));
	if (ref->side == IVSOCK_SIDE_CONNECTOR)
		ivsock_offer_cancel(rg, ivsock_ld32(&ch->offer), ivsock_ld32(&ch->offer_gen));
	revoke_end(a, ch, (int)ref->side);
	if (ivsock_chan_close(rg, ref->channel, ref->channel_gen, (int)ref->side,
			      (ref->flags & IVSOCK_AG_CLOSE_RESET) != 0) >= 0)
		charge(owner, ref->side == IVSOCK_SIDE_CONNECTOR ? cls : -1, -1);
}

static void do_attach(struct agent *a, struct agent_client *c, uint32_t seq,
		      const struct ivsock_ag_chan_ref *ref, int sock)
{
	struct ivsock_region *rg = &a->be.rg;
	struct ivsock_channel *ch;
	struct ivsock_ag_chan r;
	struct broker_sock bs;
	uint32_t peer_vm;
	int rc, wfd = -1;

	/* exec'd or forked holders prove it with the socket: always needed */
	rc = sock < 0 ? -EBADF : broker_sock_inspect(sock, &bs);
	if (rc == 0)
		rc = owns_end(a, c, ref, sock, &ch);
	if (rc == 0 && __atomic_load_n(&ch->end[ref->side].cookie, __ATOMIC_RELAXED) != bs.cookie)
		rc = -EPERM;
	if (rc == 0 && ivsock_chan_state(rg, ref->channel, ref->channel_gen) != IVSOCK_CHAN_CONNECTED)
		rc = -ESTALE;
	if (rc == 0) {
		peer_vm = ivsock_ld32(&ch->end[!ref->side].vm_index);
		rc = grant(a, ref->channel, ref->channel_gen, (int)ref->side,
			   ivsock_ld32(&ch->block), peer_vm, &r, &wfd);
	}
	if (rc == 0) {
		r.flags = IVSOCK_AG_CHAN_CONNECTED;
		r.peer_id = ivsock_ld32(&ch->end[!ref->side].peer_id);
		r.peer_vector = ivsock_ld32(&ch->end[!ref->side].vector);
	}
	send_reply(c, IVSOCK_AG_CHAN_REPLY, seq, rc, rc ? NULL : &r, rc ? 0 : sizeof(r), wfd);
	if (wfd >= 0)
		close(wfd);
}

/* The reply type of a request type (0: it has none). */
static uint16_t reply_type(uint16_t type)
{
	switch (type) {
	case IVSOCK_AG_LISTEN: return IVSOCK_AG_LISTEN_REPLY;
	case IVSOCK_AG_OPEN:
	case IVSOCK_AG_TRACK:
	case IVSOCK_AG_ACCEPT:
	case IVSOCK_AG_ATTACH: return IVSOCK_AG_CHAN_REPLY;
	case IVSOCK_AG_ABANDON: return IVSOCK_AG_ABANDON_REPLY;
	default: return 0;
	}
}

int broker_handle(struct agent *a, struct agent_client *c, const struct ivsock_msg_hdr *h,
		  const void *payload, int sock)
{
	int rc = 0;

#define NEED(T) do { if (h->len != sizeof(T)) { rc = -EPROTO; goto out; } } while (0)
	if (!c->hello) {
		/* a window names our client id and vector: HELLO first */
		if (reply_type(h->type))
			send_reply(c, reply_type(h->type), h->seq, -ENOTCONN, NULL, 0, -1);
		else if (h->type > IVSOCK_AG_TYPE_MAX && (h->type & 1) && h->type < 0xffff)
			send_reply(c, h->type + 1, h->seq, -EOPNOTSUPP, NULL, 0, -1);
		goto out;
	}
	switch (h->type) {
	case IVSOCK_AG_LISTEN: {
		struct ivsock_ag_listen req;

		NEED(req);
		memcpy(&req, payload, sizeof(req));
		do_listen(a, c, h->seq, &req, sock);
		break;
	}
	case IVSOCK_AG_UNLISTEN: {
		struct ivsock_ag_listener_ref req;

		NEED(req);
		memcpy(&req, payload, sizeof(req));
		do_unlisten(a, c, &req);
		break;
	}
	case IVSOCK_AG_OPEN:
	case IVSOCK_AG_TRACK: {
		struct ivsock_ag_open req;

		NEED(req);
		memcpy(&req, payload, sizeof(req));
		if (h->type == IVSOCK_AG_OPEN)
			do_open(a, c, h->seq, &req, sock);
		else
			do_track(a, c, h->seq, &req, &sock);
		break;
	}
	case IVSOCK_AG_ACCEPT:
		if (h->len) {
			rc = -EPROTO;
			goto out;
		}
		do_accept(a, c, h->seq, sock);
		break;
	case IVSOCK_AG_ABANDON:
	case IVSOCK_AG_CLOSE:
	case IVSOCK_AG_PORT:
	case IVSOCK_AG_ATTACH: {
		struct ivsock_ag_chan_ref req;

		NEED(req);
		memcpy(&req, payload, sizeof(req));
		if (h->type == IVSOCK_AG_ABANDON)
			do_abandon(a, c, h->seq, &req, sock);
		else if (h->type == IVSOCK_AG_CLOSE)
			do_close(a, c, &req, sock);
		else if (h->type == IVSOCK_AG_PORT)
			do_port(a, c, &req, sock);
		else
			do_attach(a, c, h->seq, &req, sock);
		break;
	}
	default:
		/* unknown odd types get an answer of the next even type, even
		 * ones (replies sent to us) none: never type 0 */
		if ((h->type & 1) && h->type < 0xffff)
			send_reply(c, h->type + 1, h->seq, -EOPNOTSUPP, NULL, 0, -1);
		break;
	}
#undef NEED
out:
	if (sock >= 0)
		close(sock);
	if (a->spin_ns)
		a->busy_until_ns = agent_now_ns() + a->spin_ns;
	return rc;
}

void broker_client_gone(struct agent *a, struct agent_client *c)
{
	struct ivsock_region *rg = &a->be.rg;
	uint8_t vm = (uint8_t)a->be.vm_index;

	broker_held_client_gone(a, c->id); /* no answer to a later client */
	/* the kernel first: none of its windows may outlive its ends */
	for (uint32_t i = 0; i < rg->channel_cap; i++) {
		struct ivsock_channel *ch = &rg->channels[i];
		struct ivsock_slot_val sv = ivsock_slot_get(&ch->slot);

		if (sv.state == IVSOCK_SLOT_FREE || sv.state == IVSOCK_CHAN_TCP)
			continue; /* (a TCP entry has no window) */
		bool mine[2];

		for (int side = 0; side < 2; side++)
			mine[side] = ivsock_ld32(&ch->end[side].vm_index) == vm &&
				     ivsock_ld32(&ch->end[side].client) == c->id;
		if (mine[0] && mine[1])
			revoke_block(a, ivsock_ld32(&ch->block)); /* both ends go */
		else if (mine[0] || mine[1])
			revoke_end(a, ch, mine[0] ? 0 : 1);
	}
}
