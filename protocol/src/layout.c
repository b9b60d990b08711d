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

static const uint32_t default_sizes[IVSOCK_CLASS_MAX] = {
	1024, 32 * 1024, 128 * 1024, 1024 * 1024
};
static const uint32_t default_shares[IVSOCK_CLASS_MAX] = { 10, 20, 50, 20 };

void ivsock_region_params_default(struct ivsock_region_params *p)
{
	uint32_t k;

	memset(p, 0, sizeof(*p));
	p->vm_cap = 16;
	p->listener_cap = 256;
	p->offer_cap = 1024;
	p->channel_cap = 1024;
	p->nclasses = IVSOCK_CLASS_MAX;
	for (k = 0; k < IVSOCK_CLASS_MAX; k++) {
		p->class_size[k] = default_sizes[k];
		p->class_share[k] = default_shares[k];
	}
	p->default_class = 2; /* 128 KiB: the v3 ring size */
	p->daemon_peer_id = 0;
}

void ivsock_region_params_single(struct ivsock_region_params *p, uint32_t ring_size)
{
	uint32_t k;

	ivsock_region_params_default(p);
	p->nclasses = 1;
	for (k = 0; k < IVSOCK_CLASS_MAX; k++)
		p->class_size[k] = p->class_share[k] = 0;
	p->class_size[0] = ring_size;
	p->class_share[0] = 100;
	p->default_class = 0;
}

static uint32_t round_pow2(uint32_t v)
{
	uint32_t r = 1;

	while (r < v && r < (1U << 31))
		r <<= 1;
	return r;
}

static bool block_ring_size_valid(uint64_t n)
{
	return n >= IVSOCK_BLOCK_RING_MIN && n <= IVSOCK_BLOCK_RING_MAX && (n & (n - 1)) == 0;
}

#define MAX_BLOCKS (1U << 24)

struct geometry {
	uint64_t vm_off, listener_off, offer_off, channel_off, mailbox_off;
	uint64_t blockslot_off, pool_off, pool_size;
	uint32_t nclasses, nblocks;
	struct ivsock_class_desc class[IVSOCK_CLASS_MAX];
};

/* The tables, one after another, page aligned; returns where they end. */
static uint64_t tables_end(struct geometry *g, uint32_t vm_cap, uint32_t listener_cap,
			   uint32_t offer_cap, uint32_t channel_cap)
{
	uint64_t off = ALIGN_UP(sizeof(struct ivsock_superblock), TABLE_ALIGN);

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
	g->blockslot_off = off;
	return off;
}

/*
 * Place the classes (ring_size and blocks_per_vm set in g->class[]) after
 * the block slot words: fills block_size, first_block, pool_off of each
 * class and the pool. @return 0, or -ENOSPC if it does not fit in size.
 */
static int place_classes(struct geometry *g, uint64_t size, uint32_t vm_cap)
{
	uint64_t nblocks = 0, off;
	uint32_t k;

	for (k = 0; k < g->nclasses; k++)
		nblocks += (uint64_t)g->class[k].blocks_per_vm * vm_cap;
	if (!nblocks || nblocks > MAX_BLOCKS)
		return -ENOSPC;
	g->nblocks = (uint32_t)nblocks;
	g->pool_off = ALIGN_UP(g->blockslot_off + nblocks * 8, IVSOCK_PAGE);
	off = g->pool_off;
	nblocks = 0;
	for (k = 0; k < g->nclasses; k++) {
		struct ivsock_class_desc *c = &g->class[k];

		c->block_size = ivsock_block_size(c->ring_size);
		c->first_block = (uint32_t)nblocks;
		c->pad = 0;
		c->pool_off = off;
		off += (uint64_t)c->blocks_per_vm * vm_cap * c->block_size;
		nblocks += (uint64_t)c->blocks_per_vm * vm_cap;
		if (off > size)
			return -ENOSPC;
	}
	g->pool_size = off - g->pool_off;
	return 0;
}

/* Format: blocks_per_vm of each class from its share of what the tables
 * leave; then give back blocks (largest class first) until it fits. */
static int compute_format(struct geometry *g, uint64_t size, uint32_t vm_cap,
			  uint32_t listener_cap, uint32_t offer_cap, uint32_t channel_cap,
			  const struct ivsock_region_params *p)
{
	uint64_t off = tables_end(g, vm_cap, listener_cap, offer_cap, channel_cap);
	uint64_t avail;
	uint32_t k;

	if (off >= size)
		return -ENOSPC;
	avail = size - off;
	g->nclasses = p->nclasses;
	for (k = 0; k < p->nclasses; k++) {
		uint64_t bs = ivsock_block_size(p->class_size[k]);
		uint64_t n = avail / 100 * p->class_share[k] / ((bs + 8) * vm_cap);

		if (n > MAX_BLOCKS / vm_cap)
			n = MAX_BLOCKS / vm_cap;
		g->class[k].ring_size = p->class_size[k];
		g->class[k].blocks_per_vm = (uint32_t)n;
	}
	for (;;) {
		int rc = place_classes(g, size, vm_cap);

		if (rc == 0)
			return 0;
		for (k = g->nclasses; k-- > 0;)
			if (g->class[k].blocks_per_vm)
				break;
		if (k >= g->nclasses)
			return -ENOSPC; /* nothing left to give back */
		g->class[k].blocks_per_vm--;
	}
}

static void bind_tables(struct ivsock_region *rg, const struct geometry *g)
{
	uint32_t k;

	rg->vms = (struct ivsock_vm_entry *)(rg->base + g->vm_off);
	rg->listeners = (struct ivsock_listener *)(rg->base + g->listener_off);
	rg->offers = (struct ivsock_offer *)(rg->base + g->offer_off);
	rg->channels = (struct ivsock_channel *)(rg->base + g->channel_off);
	rg->mailboxes = (struct ivsock_mailbox *)(rg->base + g->mailbox_off);
	rg->blockslots = (ivsock_a64 *)(rg->base + g->blockslot_off);
	rg->pool = rg->base + g->pool_off;
	rg->tables_size = g->pool_off;
	rg->nclasses = g->nclasses;
	rg->nblocks = g->nblocks;
	memset(rg->class, 0, sizeof(rg->class));
	for (k = 0; k < g->nclasses; k++)
		rg->class[k] = g->class[k];
}

static int params_valid(const struct ivsock_region_params *p)
{
	uint32_t k, share = 0;

	if (!p->vm_cap || p->vm_cap > IVSOCK_MAX_VMS || !p->listener_cap ||
	    !p->offer_cap || !p->channel_cap || p->channel_cap > (1U << 24) ||
	    p->daemon_peer_id > 65535)
		return -EINVAL;
	if (!p->nclasses || p->nclasses > IVSOCK_CLASS_MAX || p->default_class >= p->nclasses)
		return -EINVAL;
	for (k = 0; k < p->nclasses; k++) {
		if (!block_ring_size_valid(p->class_size[k]) || p->class_share[k] > 100)
			return -EINVAL;
		if (k && p->class_size[k] <= p->class_size[k - 1])
			return -EINVAL; /* strictly increasing: one class per size */
		share += p->class_share[k];
	}
	if (share > 100)
		return -EINVAL;
	return 0;
}

int ivsock_region_format(struct ivsock_region *rg, void *base, size_t size,
			 const struct ivsock_region_params *p)
{
	struct ivsock_region_params d;
	struct ivsock_superblock *sb = base;
	struct geometry g;
	uint64_t fid = 0;
	uint32_t k;
	int rc;

	if (!p) {
		ivsock_region_params_default(&d);
		p = &d;
	}
	if (!rg || !base || size < 65536 || (size & (size - 1)))
		return -EINVAL;
	rc = params_valid(p);
	if (rc < 0)
		return rc;
	memset(&g, 0, sizeof(g));
	rc = compute_format(&g, size, p->vm_cap, p->listener_cap, round_pow2(p->offer_cap),
			    p->channel_cap, p);
	if (rc < 0)
		return rc;
	/* A region whose default class has no block cannot carry a connection. */
	if (!g.class[p->default_class].blocks_per_vm)
		return -ENOSPC;

	/* Zero the tables (the pool's blocks are formatted when allocated). */
	memset(base, 0, g.pool_off);
	memset(rg, 0, sizeof(*rg));
	rg->base = base;
	rg->size = size;
	rg->sb = sb;
	rg->vm_cap = p->vm_cap;
	rg->listener_cap = p->listener_cap;
	rg->offer_cap = round_pow2(p->offer_cap);
	rg->channel_cap = p->channel_cap;
	rg->default_class = p->default_class;
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
	sb->daemon_peer_id = p->daemon_peer_id;
	sb->nclasses = g.nclasses;
	sb->default_class = p->default_class;
	for (k = 0; k < g.nclasses; k++)
		sb->class[k] = g.class[k];
	sb->vm_off = g.vm_off;
	sb->listener_off = g.listener_off;
	sb->offer_off = g.offer_off;
	sb->channel_off = g.channel_off;
	sb->mailbox_off = g.mailbox_off;
	sb->blockslot_off = g.blockslot_off;
	sb->pool_off = g.pool_off;
	sb->pool_size = g.pool_size;
	ivsock_store_relaxed(&sb->daemon_state, IVSOCK_DAEMON_UP);
	/* The magic goes last, with release: an attacher that sees it sees a
	 * complete superblock. Pairs with the acquire in attach. */
	atomic_thread_fence(memory_order_release);
	ivsock_store_release((ivsock_a64 *)&sb->magic, IVSOCK_MAGIC);
	return 0;
}

/* Attach a region of `size` bytes of which the first map_len are mapped
 * at base (the whole region, or only its tables part). */
static int attach(struct ivsock_region *rg, void *base, size_t map_len, size_t size)
{
	const struct ivsock_superblock *sb = base;
	struct ivsock_class_desc cls[IVSOCK_CLASS_MAX];
	struct geometry g;
	uint64_t magic;
	uint32_t vm_cap, listener_cap, offer_cap, channel_cap, nclasses, def, k;

	if (!rg || !base || map_len < sizeof(*sb) || map_len > size)
		return -EINVAL;
	magic = ivsock_load_acquire((ivsock_a64 *)&sb->magic);
	if (magic != IVSOCK_MAGIC)
		return -EBADF;
	if (sb->version != IVSOCK_LAYOUT_VERSION || sb->sb_size != sizeof(*sb))
		return -EPROTONOSUPPORT;
	if (sb->region_size != size)
		return -EMSGSIZE;
	/* Read each geometry field once (into private copies), then check it. */
	vm_cap = sb->vm_cap;
	listener_cap = sb->listener_cap;
	offer_cap = sb->offer_cap;
	channel_cap = sb->channel_cap;
	nclasses = sb->nclasses;
	def = sb->default_class;
	memcpy(cls, (const void *)sb->class, sizeof(cls));
	if (!vm_cap || vm_cap > IVSOCK_MAX_VMS || !listener_cap ||
	    listener_cap > (1U << 20) || !offer_cap || (offer_cap & (offer_cap - 1)) ||
	    offer_cap > (1U << 24) || !channel_cap || channel_cap > (1U << 24) ||
	    !nclasses || nclasses > IVSOCK_CLASS_MAX || def >= nclasses)
		return -EPROTO;
	/* Recompute the layout ourselves from the capacities and the class
	 * list (ring_size, blocks_per_vm) instead of trusting offsets. */
	memset(&g, 0, sizeof(g));
	tables_end(&g, vm_cap, listener_cap, offer_cap, channel_cap);
	g.nclasses = nclasses;
	for (k = 0; k < IVSOCK_CLASS_MAX; k++) {
		if (k >= nclasses) {
			static const struct ivsock_class_desc zero;

			if (memcmp(&cls[k], &zero, sizeof(zero)))
				return -EPROTO; /* unused descriptors stay zero */
			continue;
		}
		if (!block_ring_size_valid(cls[k].ring_size) ||
		    cls[k].blocks_per_vm > MAX_BLOCKS ||
		    (k && cls[k].ring_size <= cls[k - 1].ring_size))
			return -EPROTO;
		g.class[k].ring_size = cls[k].ring_size;
		g.class[k].blocks_per_vm = cls[k].blocks_per_vm;
	}
	if (!g.class[def].blocks_per_vm || place_classes(&g, size, vm_cap) < 0)
		return -EPROTO;
	if (g.vm_off != sb->vm_off || g.listener_off != sb->listener_off ||
	    g.offer_off != sb->offer_off || g.channel_off != sb->channel_off ||
	    g.mailbox_off != sb->mailbox_off || g.blockslot_off != sb->blockslot_off ||
	    g.pool_off != sb->pool_off || g.pool_size != sb->pool_size)
		return -EPROTO;
	for (k = 0; k < nclasses; k++)
		if (memcmp(&g.class[k], &cls[k], sizeof(cls[k])))
			return -EPROTO;
	/* The tables part is what processes may map read-only: it must end on
	 * a page and hold nothing of the pool. */
	if (g.pool_off % IVSOCK_PAGE)
		return -EPROTO;
	if (map_len < g.pool_off)
		return -EMSGSIZE; /* a tables mapping shorter than the tables */

	memset(rg, 0, sizeof(*rg));
	rg->base = base;
	rg->size = size;
	rg->sb = (struct ivsock_superblock *)base;
	rg->vm_cap = vm_cap;
	rg->listener_cap = listener_cap;
	rg->offer_cap = offer_cap;
	rg->channel_cap = channel_cap;
	rg->default_class = def;
	rg->format_id = sb->format_id;
	bind_tables(rg, &g);
	if (map_len < size)
		rg->pool = NULL; /* not mapped here: blocks come through windows */
	return 0;
}

int ivsock_region_attach(struct ivsock_region *rg, void *base, size_t size)
{
	return attach(rg, base, size, size);
}

int ivsock_region_attach_tables(struct ivsock_region *rg, void *base, size_t map_len,
				size_t region_size)
{
	return attach(rg, base, map_len, region_size);
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

struct ivsock_end_ctl *ivsock_block_ctl(void *block, uint32_t ring_size, int side)
{
	return (struct ivsock_end_ctl *)((uint8_t *)block + ivsock_block_half_off(ring_size, side));
}

uint8_t *ivsock_block_data(void *block, uint32_t ring_size, int side)
{
	return (uint8_t *)block + ivsock_block_half_off(ring_size, side) + IVSOCK_CTL_SIZE;
}

int ivsock_region_block_class(const struct ivsock_region *rg, uint32_t idx)
{
	uint32_t k;

	if (idx >= rg->nblocks)
		return -1;
	for (k = rg->nclasses; k-- > 0;)
		if (idx >= rg->class[k].first_block)
			return (int)k;
	return -1;
}

uint32_t ivsock_region_block_vm(const struct ivsock_region *rg, uint32_t idx)
{
	int k = ivsock_region_block_class(rg, idx);

	if (k < 0 || !rg->class[k].blocks_per_vm)
		return IVSOCK_VM_NONE;
	return (idx - rg->class[k].first_block) / rg->class[k].blocks_per_vm;
}

uint64_t ivsock_region_block_off(const struct ivsock_region *rg, uint32_t idx)
{
	int k = ivsock_region_block_class(rg, idx);

	if (k < 0)
		return 0;
	return rg->class[k].pool_off + (uint64_t)(idx - rg->class[k].first_block) *
				       rg->class[k].block_size;
}

void *ivsock_region_block_mem(const struct ivsock_region *rg, uint32_t idx)
{
	uint64_t off = ivsock_region_block_off(rg, idx);

	return off ? rg->base + off : NULL;
}

/* Format both rings of a block and zero both ctl pages. */
static void block_format(void *mem, uint32_t ring_size)
{
	int side;

	for (side = 0; side < 2; side++) {
		struct ivsock_end_ctl *e = ivsock_block_ctl(mem, ring_size, side);

		memset(e, 0, IVSOCK_CTL_SIZE);
	}
	/* ring c2s: producer words in ctl 0, consumer words in ctl 1; s2c the
	 * other way round. The release in ivsock_ring_format() publishes the
	 * zeroed pages with it. */
	ivsock_ring_format(&ivsock_block_ctl(mem, ring_size, 1)->prod,
			   &ivsock_block_ctl(mem, ring_size, 0)->cons, ring_size);
	ivsock_ring_format(&ivsock_block_ctl(mem, ring_size, 0)->prod,
			   &ivsock_block_ctl(mem, ring_size, 1)->cons, ring_size);
}

int ivsock_block_alloc(struct ivsock_region *rg, uint8_t vm, uint32_t cls, uint16_t client,
		       uint32_t *idx, uint32_t *gen)
{
	const struct ivsock_class_desc *c;
	uint32_t first, i, g;

	if (vm >= rg->vm_cap || cls >= rg->nclasses)
		return -EINVAL;
	c = &rg->class[cls];
	first = c->first_block + (uint32_t)vm * c->blocks_per_vm;
	for (i = 0; i < c->blocks_per_vm; i++) {
		ivsock_a64 *w = &rg->blockslots[first + i];

		g = ivsock_slot_claim(w, vm, client);
		if (!g)
			continue;
		block_format(ivsock_region_block_mem(rg, first + i), c->ring_size);
		/* INIT -> ACTIVE(2) with release: the formatted block is
		 * visible to whoever learns this block's (idx, gen). */
		if (ivsock_slot_move(w, g, IVSOCK_SLOT_INIT, 2) < 0)
			return -EAGAIN; /* someone freed our claim: corrupt peer */
		*idx = first + i;
		*gen = g;
		return 0;
	}
	return -ENOSPC;
}

int ivsock_block_free(struct ivsock_region *rg, uint32_t idx, uint32_t gen)
{
	if (idx >= rg->nblocks)
		return -EINVAL;
	return ivsock_slot_release(&rg->blockslots[idx], gen);
}

int ivsock_block_release_vm(struct ivsock_region *rg, uint8_t vm)
{
	/* Blocks a channel still references (a survivor's REVOKED channel, an
	 * acceptor still in ACCEPTING) stay claimed: their last close frees
	 * them (protocol/src/channel.c). */
	int n = ivsock_block_release_unreferenced(rg, vm, -1);

	return n < 0 ? 0 : n;
}

uint32_t ivsock_block_class_used(const struct ivsock_region *rg, uint8_t vm, uint32_t cls)
{
	const struct ivsock_class_desc *c;
	uint32_t i, n = 0, first;

	if (vm >= rg->vm_cap || cls >= rg->nclasses)
		return 0;
	c = &rg->class[cls];
	first = c->first_block + (uint32_t)vm * c->blocks_per_vm;
	for (i = 0; i < c->blocks_per_vm; i++)
		if (ivsock_slot_get(&rg->blockslots[first + i]).state != IVSOCK_SLOT_FREE)
			n++;
	return n;
}

uint32_t ivsock_block_pool_used(const struct ivsock_region *rg, uint8_t vm)
{
	uint32_t k, n = 0;

	for (k = 0; k < rg->nclasses; k++)
		n += ivsock_block_class_used(rg, vm, k);
	return n;
}
