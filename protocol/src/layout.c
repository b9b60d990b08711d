// SPDX-License-Identifier: MIT
/*
 * Formatting and attaching a shared region: computes the geometry, writes
 * the superblock, and validates a superblock written by someone else before
 * any table is trusted.
 */
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/random.h>

#include "ivsock/layout.h"

#define ALIGN_UP(x, a) (((x) + ((a) - 1)) & ~((uint64_t)(a) - 1))
#define TABLE_ALIGN 4096ULL

void ivsock_region_params_default(struct ivsock_region_params *p)
{
	memset(p, 0, sizeof(*p));
	p->vm_cap = 16;
	p->listener_cap = 256;
	p->offer_cap = 1024;
	p->channel_cap = 1024;
	p->ring_size = 128 * 1024;
	p->daemon_peer_id = 0;
}

static uint32_t round_pow2(uint32_t v)
{
	uint32_t r = 1;

	while (r < v && r < (1U << 31))
		r <<= 1;
	return r;
}

struct geometry {
	uint64_t vm_off, listener_off, offer_off, channel_off, mailbox_off;
	uint64_t ringslot_off, pool_off, pool_size;
	uint32_t ring_stride, rings_per_vm;
};

/* Lay the tables out one after another; 0 or -ENOSPC. */
static int compute_geometry(struct geometry *g, uint64_t size, uint32_t vm_cap,
			    uint32_t listener_cap, uint32_t offer_cap,
			    uint32_t channel_cap, uint32_t ring_size,
			    uint32_t rings_per_vm /* 0 = as many as fit */)
{
	uint64_t off = ALIGN_UP(sizeof(struct ivsock_superblock), TABLE_ALIGN);
	uint64_t total_rings, per_vm;

	g->vm_off = off;
	off = ALIGN_UP(off + (uint64_t)vm_cap * sizeof(struct ivsock_vm_entry), TABLE_ALIGN);
	g->listener_off = off;
	off = ALIGN_UP(off + (uint64_t)listener_cap * sizeof(struct ivsock_listener), TABLE_ALIGN);
	g->offer_off = off;
	off = ALIGN_UP(off + (uint64_t)offer_cap * sizeof(struct ivsock_offer), TABLE_ALIGN);
	g->channel_off = off;
	off = ALIGN_UP(off + (uint64_t)channel_cap * sizeof(struct ivsock_channel), TABLE_ALIGN);
	g->mailbox_off = off;
	off = ALIGN_UP(off + (uint64_t)vm_cap * sizeof(struct ivsock_mailbox), TABLE_ALIGN);
	g->ring_stride = (uint32_t)ALIGN_UP(IVSOCK_RING_FOOTPRINT(ring_size), IVSOCK_CACHELINE);
	g->ringslot_off = off;
	if (off >= size)
		return -ENOSPC;
	/* rings + one 8-byte slot word each must fit in what is left */
	total_rings = (size - off) / (g->ring_stride + 8ULL);
	per_vm = total_rings / vm_cap;
	/* The pool starts at the next table boundary after the slot words:
	 * that padding may cost a few rings. */
	while (!rings_per_vm && per_vm >= 2 &&
	       ALIGN_UP(off + per_vm * vm_cap * 8, TABLE_ALIGN) +
	       per_vm * vm_cap * g->ring_stride > size)
		per_vm--;
	if (rings_per_vm) {
		if (rings_per_vm > per_vm)
			return -ENOSPC;
		per_vm = rings_per_vm;
	}
	if (per_vm < 2 || per_vm > (1U << 24))
		return -ENOSPC;
	g->rings_per_vm = (uint32_t)per_vm;
	total_rings = per_vm * vm_cap;
	g->pool_off = ALIGN_UP(off + total_rings * 8, TABLE_ALIGN);
	g->pool_size = total_rings * g->ring_stride;
	if (g->pool_off + g->pool_size > size)
		return -ENOSPC;
	return 0;
}

static void bind_tables(struct ivsock_region *rg, const struct geometry *g)
{
	rg->vms = (struct ivsock_vm_entry *)(rg->base + g->vm_off);
	rg->listeners = (struct ivsock_listener *)(rg->base + g->listener_off);
	rg->offers = (struct ivsock_offer *)(rg->base + g->offer_off);
	rg->channels = (struct ivsock_channel *)(rg->base + g->channel_off);
	rg->mailboxes = (struct ivsock_mailbox *)(rg->base + g->mailbox_off);
	rg->ringslots = (ivsock_a64 *)(rg->base + g->ringslot_off);
	rg->pool = rg->base + g->pool_off;
	rg->ring_stride = g->ring_stride;
	rg->rings_per_vm = g->rings_per_vm;
}

int ivsock_region_format(struct ivsock_region *rg, void *base, size_t size,
			 const struct ivsock_region_params *p)
{
	struct ivsock_region_params d;
	struct ivsock_superblock *sb = base;
	struct geometry g;
	uint64_t fid = 0;
	int rc;

	if (!p) {
		ivsock_region_params_default(&d);
		p = &d;
	}
	if (!rg || !base || size < 65536 || (size & (size - 1)))
		return -EINVAL;
	if (!p->vm_cap || p->vm_cap > IVSOCK_MAX_VMS || !p->listener_cap ||
	    !p->offer_cap || !p->channel_cap || p->channel_cap > (1U << 24) ||
	    !ivsock_ring_size_valid(p->ring_size) || p->daemon_peer_id > 65535)
		return -EINVAL;
	rc = compute_geometry(&g, size, p->vm_cap, p->listener_cap,
			      round_pow2(p->offer_cap), p->channel_cap,
			      p->ring_size, 0);
	if (rc < 0)
		return rc;

	/* Zero the tables (the pool's rings are formatted when allocated). */
	memset(base, 0, g.pool_off);
	memset(rg, 0, sizeof(*rg));
	rg->base = base;
	rg->size = size;
	rg->sb = sb;
	rg->vm_cap = p->vm_cap;
	rg->listener_cap = p->listener_cap;
	rg->offer_cap = round_pow2(p->offer_cap);
	rg->channel_cap = p->channel_cap;
	rg->ring_size = p->ring_size;
	bind_tables(rg, &g);

	if (getrandom(&fid, sizeof(fid), GRND_NONBLOCK) != sizeof(fid))
		fid = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	rg->format_id = fid;

	sb->version = IVSOCK_LAYOUT_VERSION;
	sb->sb_size = sizeof(*sb);
	sb->region_size = size;
	sb->format_id = fid;
	sb->vm_cap = rg->vm_cap;
	sb->listener_cap = rg->listener_cap;
	sb->offer_cap = rg->offer_cap;
	sb->channel_cap = rg->channel_cap;
	sb->ring_size = rg->ring_size;
	sb->ring_stride = g.ring_stride;
	sb->rings_per_vm = g.rings_per_vm;
	sb->daemon_peer_id = p->daemon_peer_id;
	sb->vm_off = g.vm_off;
	sb->listener_off = g.listener_off;
	sb->offer_off = g.offer_off;
	sb->channel_off = g.channel_off;
	sb->mailbox_off = g.mailbox_off;
	sb->ringslot_off = g.ringslot_off;
	sb->pool_off = g.pool_off;
	sb->pool_size = g.pool_size;
	ivsock_store_relaxed(&sb->daemon_state, IVSOCK_DAEMON_UP);
	/* The magic goes last, with release: an attacher that sees it sees a
	 * complete superblock. Pairs with the acquire in attach. */
	atomic_thread_fence(memory_order_release);
	ivsock_store_release((ivsock_a64 *)&sb->magic, IVSOCK_MAGIC);
	return 0;
}

int ivsock_region_attach(struct ivsock_region *rg, void *base, size_t size)
{
	const struct ivsock_superblock *sb = base;
	struct geometry g;
	uint64_t magic;
	uint32_t vm_cap, listener_cap, offer_cap, channel_cap, ring_size;

	if (!rg || !base || size < sizeof(*sb))
		return -EINVAL;
	magic = ivsock_load_acquire((ivsock_a64 *)&sb->magic);
	if (magic != IVSOCK_MAGIC)
		return -EBADF;
	if (sb->version != IVSOCK_LAYOUT_VERSION || sb->sb_size != sizeof(*sb))
		return -EPROTONOSUPPORT;
	if (sb->region_size != size)
		return -EMSGSIZE;
	/* Read each geometry field once, then check it. */
	vm_cap = sb->vm_cap;
	listener_cap = sb->listener_cap;
	offer_cap = sb->offer_cap;
	channel_cap = sb->channel_cap;
	ring_size = sb->ring_size;
	if (!vm_cap || vm_cap > IVSOCK_MAX_VMS || !listener_cap ||
	    listener_cap > (1U << 20) || !offer_cap || (offer_cap & (offer_cap - 1)) ||
	    offer_cap > (1U << 24) || !channel_cap || channel_cap > (1U << 24) ||
	    !ivsock_ring_size_valid(ring_size))
		return -EPROTO;
	/* Recompute the layout ourselves instead of trusting offsets. */
	if (compute_geometry(&g, size, vm_cap, listener_cap, offer_cap,
			     channel_cap, ring_size, sb->rings_per_vm) < 0)
		return -EPROTO;
	if (g.vm_off != sb->vm_off || g.listener_off != sb->listener_off ||
	    g.offer_off != sb->offer_off || g.channel_off != sb->channel_off ||
	    g.mailbox_off != sb->mailbox_off || g.ringslot_off != sb->ringslot_off ||
	    g.pool_off != sb->pool_off || g.pool_size != sb->pool_size ||
	    g.ring_stride != sb->ring_stride)
		return -EPROTO;

	memset(rg, 0, sizeof(*rg));
	rg->base = base;
	rg->size = size;
	rg->sb = (struct ivsock_superblock *)base;
	rg->vm_cap = vm_cap;
	rg->listener_cap = listener_cap;
	rg->offer_cap = offer_cap;
	rg->channel_cap = channel_cap;
	rg->ring_size = ring_size;
	rg->format_id = sb->format_id;
	bind_tables(rg, &g);
	return 0;
}

const char *ivsock_region_strerror(int err)
{
	switch (err) {
	case 0: return "ok";
	case -EINVAL: return "invalid arguments";
	case -EBADF: return "not an ivsock region (bad magic): is ivsockd formatting it?";
	case -EPROTONOSUPPORT: return "region layout version differs from this build";
	case -EMSGSIZE: return "region size differs from the size in its superblock";
	case -EPROTO: return "region superblock geometry is inconsistent";
	case -ENOSPC: return "tables do not fit in a region of this size";
	default: return "unknown error";
	}
}

void *ivsock_region_ring_mem(const struct ivsock_region *rg, uint32_t idx)
{
	if (idx >= rg->vm_cap * rg->rings_per_vm)
		return NULL;
	return rg->pool + (uint64_t)idx * rg->ring_stride;
}

int ivsock_ring_alloc(struct ivsock_region *rg, uint8_t vm, uint16_t client,
		      uint32_t *idx, uint32_t *gen)
{
	uint32_t first, i, g;

	if (vm >= rg->vm_cap)
		return -EINVAL;
	first = (uint32_t)vm * rg->rings_per_vm;
	for (i = 0; i < rg->rings_per_vm; i++) {
		ivsock_a64 *w = &rg->ringslots[first + i];

		g = ivsock_slot_claim(w, vm, client);
		if (!g)
			continue;
		ivsock_ring_format(ivsock_region_ring_mem(rg, first + i), rg->ring_size);
		/* INIT -> ACTIVE(2) with release: the formatted header is
		 * visible to whoever learns this ring's (idx, gen). */
		if (ivsock_slot_move(w, g, IVSOCK_SLOT_INIT, 2) < 0)
			return -EAGAIN; /* someone freed our claim: corrupt peer */
		*idx = first + i;
		*gen = g;
		return 0;
	}
	return -ENOSPC;
}

int ivsock_ring_free(struct ivsock_region *rg, uint32_t idx, uint32_t gen)
{
	if (idx >= rg->vm_cap * rg->rings_per_vm)
		return -EINVAL;
	return ivsock_slot_release(&rg->ringslots[idx], gen);
}

int ivsock_ring_release_vm(struct ivsock_region *rg, uint8_t vm)
{
	/* Rings a channel still references (a survivor's REVOKED channel, an
	 * acceptor still in ACCEPTING) stay claimed: their last close frees
	 * them (protocol/src/channel.c). */
	int n = ivsock_ring_release_unreferenced(rg, vm, -1);

	return n < 0 ? 0 : n;
}

uint32_t ivsock_ring_pool_used(const struct ivsock_region *rg, uint8_t vm)
{
	uint32_t i, n = 0, first;

	if (vm >= rg->vm_cap)
		return 0;
	first = (uint32_t)vm * rg->rings_per_vm;
	for (i = 0; i < rg->rings_per_vm; i++)
		if (ivsock_slot_get(&rg->ringslots[first + i]).state != IVSOCK_SLOT_FREE)
			n++;
	return n;
}
