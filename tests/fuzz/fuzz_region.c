// SPDX-License-Identifier: MIT
/*
 * Fuzzes ivsock_region_attach: a superblock that is either raw fuzz bytes or
 * a correctly formatted one with fuzzed fields patched in, inside a region
 * of fixed size in an exact-size heap buffer. Whatever attach accepts must
 * describe tables that lie entirely inside the region; the harness touches
 * the last byte of each so ASan reports any table that does not.
 */
#include <errno.h>

#include "ivsock/layout.h"
#include "fuzz.h"

#define REGION_SIZE (256U * 1024)

static uint8_t *region;

static void touch(const void *p, size_t len)
{
	const uint8_t *b = p;

	FUZZ_ASSERT(b >= region && b + len <= region + REGION_SIZE);
	/* Reads through ASan's checks, at both ends. */
	(void)*(volatile const uint8_t *)b;
	(void)*(volatile const uint8_t *)(b + len - 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	uint8_t mode = fuzz_u8(&in);
	struct ivsock_region rg;
	size_t got, i;
	uint32_t k;
	int rc;

	if (!region) {
		region = aligned_alloc(4096, REGION_SIZE);
		FUZZ_ASSERT(region);
	}
	memset(region, 0, sizeof(struct ivsock_superblock) + 4096);
	if (mode & 1) {
		/* A raw superblock. */
		const uint8_t *p = fuzz_bytes(&in, sizeof(struct ivsock_superblock), &got);

		memcpy(region, p, got);
	} else {
		struct ivsock_region_params pr;

		ivsock_region_params_single(&pr, 4096U << (fuzz_u8(&in) % 6));
		pr.vm_cap = 1 + fuzz_u8(&in) % 8;
		pr.listener_cap = 1 + fuzz_u8(&in) % 32;
		pr.offer_cap = 1 + fuzz_u8(&in) % 32;
		pr.channel_cap = 1 + fuzz_u8(&in) % 16;
		if (ivsock_region_format(&rg, region, REGION_SIZE, &pr) < 0)
			return 0;
		/* Patches: (offset, length 1..8, bytes) into the superblock. */
		while (in.n) {
			size_t off = fuzz_u8(&in) % sizeof(struct ivsock_superblock);
			size_t len = 1 + fuzz_u8(&in) % 8;
			const uint8_t *p = fuzz_bytes(&in, len, &got);

			if (off + got > sizeof(struct ivsock_superblock))
				got = sizeof(struct ivsock_superblock) - off;
			memcpy(region + off, p, got);
		}
	}
	rc = ivsock_region_attach(&rg, region, REGION_SIZE);
	FUZZ_ASSERT(rc == 0 || rc == -EBADF || rc == -EPROTONOSUPPORT ||
		    rc == -EMSGSIZE || rc == -EPROTO);
	if (rc < 0)
		return 0;
	FUZZ_ASSERT(rg.vm_cap >= 1 && rg.vm_cap <= IVSOCK_MAX_VMS);
	FUZZ_ASSERT(rg.nclasses >= 1 && rg.nclasses <= IVSOCK_CLASS_MAX);
	FUZZ_ASSERT(rg.default_class < rg.nclasses);
	FUZZ_ASSERT(rg.class[rg.default_class].blocks_per_vm >= 1);
	FUZZ_ASSERT(rg.offer_cap && !(rg.offer_cap & (rg.offer_cap - 1)));
	FUZZ_ASSERT(rg.tables_size % IVSOCK_PAGE == 0);
	touch(rg.vms, (size_t)rg.vm_cap * sizeof(rg.vms[0]));
	touch(rg.listeners, (size_t)rg.listener_cap * sizeof(rg.listeners[0]));
	touch(rg.offers, (size_t)rg.offer_cap * sizeof(rg.offers[0]));
	touch(rg.channels, (size_t)rg.channel_cap * sizeof(rg.channels[0]));
	touch(rg.mailboxes, (size_t)rg.vm_cap * sizeof(rg.mailboxes[0]));
	touch(rg.blockslots, (size_t)rg.nblocks * sizeof(rg.blockslots[0]));
	/* the first and last block of every class and VM lie in the region */
	for (k = 0; k < rg.nclasses; k++) {
		const struct ivsock_class_desc *c = &rg.class[k];

		FUZZ_ASSERT(c->ring_size >= IVSOCK_BLOCK_RING_MIN && !(c->ring_size & (c->ring_size - 1)));
		FUZZ_ASSERT(c->pool_off % IVSOCK_PAGE == 0);
		for (i = 0; c->blocks_per_vm && i < (size_t)rg.vm_cap * c->blocks_per_vm;
		     i += c->blocks_per_vm) {
			uint32_t b = c->first_block + (uint32_t)i;
			uint8_t *m = ivsock_region_block_mem(&rg, b);

			FUZZ_ASSERT(m && ivsock_region_block_class(&rg, b) == (int)k);
			touch(m, c->block_size);
			m = ivsock_region_block_mem(&rg, b + c->blocks_per_vm - 1);
			FUZZ_ASSERT(m);
			touch(m, c->block_size);
		}
	}
	FUZZ_ASSERT(!ivsock_region_block_mem(&rg, rg.nblocks));
	return 0;
}
