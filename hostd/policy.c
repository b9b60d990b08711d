// SPDX-License-Identifier: MIT
/*
 * The ring policy of a domain (docs/classes.md, "Who gives a ring back"):
 * once a second ivsockd looks at every connected channel and takes rings
 * back from connections that do not use them:
 *
 *  - a ring larger than the domain's default class that moved no byte for
 *    shrink_idle (a flow that grew, or asked for a big ring, and went quiet);
 *  - under pressure: when a VM's free blocks of a class fall below
 *    reclaim_free percent of its quota, the connections of that class and
 *    VM idle for reclaim_idle, idlest first, until that many are free again
 *    (the free blocks are what a new connection gets at once, instead of
 *    TCP).
 *
 * Taking a ring back is a demote with resize_to = IVSOCK_RESIZE_RECLAIM:
 * the connection continues on TCP (docs/switch.md) and its connector asks
 * for a ring again when it is next used, falling back as a new connection
 * does when there is no room.
 *
 * Idle = neither ring's producer index moved between two looks. The indices
 * are written by the ends (untrusted): an end that fakes activity keeps its
 * own channel's ring, which it could do by sending bytes anyway.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <ivsock/channel.h>

#include "ivsockd.h"
#include "log.h"

#define POLICY_PERIOD_MS 1000

struct chan_seen {
	uint32_t gen;
	uint32_t tail[2];     /* producer indices of both rings at the last look */
	uint64_t quiet_since; /* ms: when they last moved (or we first saw them) */
};

int policy_init(struct domain *d)
{
	d->seen = calloc(d->rg.channel_cap, sizeof(*d->seen));
	return d->seen ? 0 : -ENOMEM;
}

void policy_fini(struct domain *d)
{
	free(d->seen);
	d->seen = NULL;
}

/* Take channel idx's ring back. @return true if it is now DEMOTED. */
static bool take_back(struct domain *d, uint32_t idx, uint32_t gen)
{
	return ivsock_chan_resize(&d->rg, idx, gen, IVSOCK_RESIZE_RECLAIM, domain_ring_cb, d) == 0;
}

struct victim {
	uint32_t idx, gen;
	uint64_t quiet_since;
};

static int by_quiet(const void *a, const void *b)
{
	const struct victim *x = a, *y = b;

	return x->quiet_since < y->quiet_since ? -1 : x->quiet_since > y->quiet_since;
}

/* Under pressure: VM vm's blocks of class cls. */
static void relieve(struct domain *d, uint8_t vm, uint32_t cls, uint64_t now)
{
	uint32_t quota = d->rg.class[cls].blocks_per_vm, want, used, pending = 0, n = 0, i;
	struct victim *v;

	if (!quota)
		return;
	want = quota * d->conf.reclaim_free_pct / 100;
	if (!want)
		want = 1;
	used = ivsock_block_class_used(&d->rg, vm, cls);
	if (quota - used >= want)
		return;
	v = malloc(sizeof(*v) * quota);
	if (!v)
		return;
	for (i = 0; i < d->rg.channel_cap; i++) {
		struct ivsock_channel *c = &d->rg.channels[i];
		struct ivsock_slot_val s = ivsock_slot_get(&c->slot);
		uint32_t blk = ivsock_ld32(&c->block);

		if (s.state != IVSOCK_CHAN_CONNECTED && s.state != IVSOCK_CHAN_DEMOTED)
			continue;
		if (ivsock_region_block_vm(&d->rg, blk) != vm ||
		    ivsock_region_block_class(&d->rg, blk) != (int)cls)
			continue;
		if (s.state == IVSOCK_CHAN_DEMOTED) {
			pending++; /* its block comes free once both ends are on TCP */
			continue;
		}
		if (d->seen[i].gen == s.gen && now - d->seen[i].quiet_since >= d->conf.reclaim_idle_ms &&
		    n < quota)
			v[n++] = (struct victim){ i, s.gen, d->seen[i].quiet_since };
	}
	qsort(v, n, sizeof(*v), by_quiet);
	for (i = 0; i < n && quota - used + pending < want; i++)
		if (take_back(d, v[i].idx, v[i].gen)) {
			pending++;
			d->reclaimed++;
		}
	if (i)
		log_info("domain %s: VM %u: %u of %u blocks of the %u-byte class in use: "
			 "%u idle connection%s moved to TCP", d->conf.name, vm, used, quota,
			 d->rg.class[cls].ring_size, i, i == 1 ? "" : "s");
	free(v);
}

void policy_tick(struct domain *d, uint64_t now)
{
	uint32_t def = d->rg.class[d->rg.default_class].ring_size, i, shrunk = 0;

	if (!d->seen || now - d->policy_ms < POLICY_PERIOD_MS)
		return;
	d->policy_ms = now;
	for (i = 0; i < d->rg.channel_cap; i++) {
		struct ivsock_channel *c = &d->rg.channels[i];
		struct ivsock_slot_val s = ivsock_slot_get(&c->slot);
		struct chan_seen *e = &d->seen[i];
		const struct ivsock_end_ctl *ctl[2];
		uint32_t tail[2], rs = 0;

		if (s.state != IVSOCK_CHAN_CONNECTED)
			continue;
		ctl[0] = ivsock_chan_end_ctl(&d->rg, i, 0, &rs, NULL);
		ctl[1] = ivsock_chan_end_ctl(&d->rg, i, 1, NULL, NULL);
		if (!ctl[0] || !ctl[1])
			continue; /* acceptor not attached yet, or a block that is not valid */
		tail[0] = ivsock_load_relaxed((ivsock_a32 *)&ctl[0]->prod.tail);
		tail[1] = ivsock_load_relaxed((ivsock_a32 *)&ctl[1]->prod.tail);
		if (e->gen != s.gen || e->tail[0] != tail[0] || e->tail[1] != tail[1]) {
			*e = (struct chan_seen){ s.gen, { tail[0], tail[1] }, now };
			continue;
		}
		if (d->conf.shrink_idle_ms && rs > def && now - e->quiet_since >= d->conf.shrink_idle_ms &&
		    take_back(d, i, s.gen)) {
			shrunk++;
			d->shrunk++;
		}
	}
	if (shrunk)
		log_info("domain %s: %u idle connection%s gave back rings larger than %u bytes",
			 d->conf.name, shrunk, shrunk == 1 ? "" : "s", def);
	if (!d->conf.reclaim_idle_ms)
		return;
	for (uint32_t vm = 0; vm < d->rg.vm_cap; vm++)
		for (uint32_t k = 0; k < d->rg.nclasses; k++)
			relieve(d, (uint8_t)vm, k, now);
}
