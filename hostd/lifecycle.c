// SPDX-License-Identifier: MIT
/*
 * VM entry lifecycle: ALIVE while its ivshmem client is connected; DEAD at
 * disconnect (channels reset, survivors rung, disconnect announced, peer ID
 * freed); the partition, listeners, offers and directory slot are reclaimed
 * once no channel references the VM or the grace period ends. Entries found
 * in an adopted region are ORPHANs: DEAD for lookups, channels left flowing.
 */
#include <errno.h>
#include <string.h>

#include "ivsock/channel.h"
#include "ivsock/directory.h"
#include "ivsock/listener.h"
#include "ivsock/offer.h"
#include "ivsockd.h"
#include "log.h"

static void reclaim(struct domain *d, uint32_t vm, bool forced)
{
	struct vmslot *s = &d->slots[vm];
	int nch = 0, nl, no, nr;

	/* Always, not only when forced: slots the VM left in INIT or
	 * ABANDONED are not counted by ivsock_chan_count_vm() but must go.
	 * A channel whose other end is still open in a live VM is REVOKED,
	 * not freed, and its block stays claimed (ivsock_block_release_vm()
	 * skips them) until that end closes: nothing is reused under it. */
	nch = ivsock_chan_reclaim_vm(&d->rg, (uint8_t)vm, domain_ring_cb, d);
	nl = ivsock_listener_release_vm(&d->rg, (uint8_t)vm);
	no = ivsock_offer_release_vm(&d->rg, (uint8_t)vm);
	nr = ivsock_block_release_vm(&d->rg, (uint8_t)vm);
	ivsock_dir_remove(&d->rg, vm);
	if (s->state == VMSLOT_ORPHAN)
		peer_id_free(&d->ids, s->peer_id);
	log_info("domain %s: vm %u reclaimed%s (%d channels revoked, %d listeners, "
		 "%d offers, %d blocks freed)", d->conf.name, vm,
		 forced ? " after the grace period" : "", nch, nl, no, nr);
	memset(s, 0, sizeof(*s));
}

void lifecycle_disconnect(struct client *c, const char *why)
{
	struct domain *d = c->dom;
	struct client **pp, *o;
	uint32_t vm = (uint32_t)c->vm, peer = c->peer_id;
	int n;

	for (pp = &d->clients; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			d->nclients--;
			break;
		}
	}
	ivsock_dir_mark_dead(&d->rg, vm);
	d->slots[vm].state = VMSLOT_DEAD;
	d->slots[vm].c = NULL;
	d->slots[vm].dead_ms = now_ms();
	client_free(c);
	d->dropped++;

	/* Reset the dead VM's channel ends; ring the surviving ends. */
	n = ivsock_chan_release_vm(&d->rg, (uint8_t)vm, domain_ring_cb, d);
	for (o = d->clients; o; o = o->next) {
		if (o->doomed)
			continue;
		domain_ring(d, o->peer_id, 0);
		client_send(o, peer, -1);
	}
	peer_id_free(&d->ids, peer);
	log_info("domain %s: peer %u (vm %u) gone (%s); %d channel end%s reset",
		 d->conf.name, peer, vm, why, n, n == 1 ? "" : "s");
	if (ivsock_chan_count_vm(&d->rg, (uint8_t)vm) == 0)
		reclaim(d, vm, false);
}

void lifecycle_tick(struct domain *d, uint64_t now)
{
	uint32_t vm;

	for (vm = 0; vm < d->rg.vm_cap; vm++) {
		struct vmslot *s = &d->slots[vm];

		if (s->state == VMSLOT_DEAD) {
			if (ivsock_chan_count_vm(&d->rg, (uint8_t)vm) == 0)
				reclaim(d, vm, false);
			else if (now - s->dead_ms >= d->conf.grace_ms)
				reclaim(d, vm, true);
		} else if (s->state == VMSLOT_ORPHAN) {
			uint64_t hb = ivsock_load_relaxed(&d->rg.mailboxes[vm].agent_heartbeat);

			if (hb != s->hb_last) {
				s->hb_last = hb;
				s->hb_ms = now;
			}
			if (ivsock_chan_count_vm(&d->rg, (uint8_t)vm) == 0)
				reclaim(d, vm, false);
			else if (now - s->hb_ms >= d->conf.grace_ms)
				reclaim(d, vm, true);
		}
	}
}

void lifecycle_adopt(struct domain *d)
{
	uint32_t vm, n = 0;
	uint64_t now = now_ms();

	for (vm = 0; vm < d->rg.vm_cap; vm++) {
		struct ivsock_vm_entry *e = &d->rg.vms[vm];
		struct ivsock_slot_val v = ivsock_slot_get(&e->slot);
		struct vmslot *s = &d->slots[vm];
		uint32_t peer = e->peer_id;

		if (v.state == IVSOCK_SLOT_FREE || s->state == VMSLOT_LIVE)
			continue;   /* free, or resumed from the fd store */
		if (v.state != IVSOCK_VM_ALIVE && v.state != IVSOCK_VM_DEAD) {
			/* Half-added when the previous daemon died. */
			ivsock_slot_release(&e->slot, v.gen);
			continue;
		}
		if (v.state == IVSOCK_VM_ALIVE)
			ivsock_dir_mark_dead(&d->rg, vm);
		s->state = VMSLOT_ORPHAN;
		s->dead_ms = now;
		s->hb_last = ivsock_load_relaxed(&d->rg.mailboxes[vm].agent_heartbeat);
		s->hb_ms = now;
		s->peer_id = peer <= 65535 && peer_id_reserve(&d->ids, peer) == 0 ? peer : 65536;
		n++;
	}
	if (n)
		log_notice("domain %s: %u VM entr%s of the previous daemon kept as orphans "
			   "(their channels keep flowing; reclaimed when they close)",
			   d->conf.name, n, n == 1 ? "y" : "ies");
}
