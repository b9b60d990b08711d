// SPDX-License-Identifier: MIT
/*
 * Fuzzes the readers of the shared tables over hostile region contents. A
 * small region is formatted and populated through the writer API (two VMs,
 * a listener, a channel offered from VM 0 to VM 1), then fuzzed byte
 * patches overwrite anything after the superblock, as a corrupt or hostile
 * VM could. Then every reader runs: ivsock_dir_read/find_addr/find_peer,
 * ivsock_listener_find, ivsock_offer_take, ivsock_chan_accept and the
 * connector's view, I/O on the rings they hand out, and the daemon's bulk
 * reclaim. The region is an exact-size heap buffer: ASan sees any overrun.
 */
#include <errno.h>
#include <arpa/inet.h>

#include "ivsock/channel.h"
#include "ivsock/directory.h"
#include "ivsock/listener.h"
#include "ivsock/offer.h"
#include "fuzz.h"

#define REGION_SIZE 65536U

static uint8_t *region;
static uint8_t buf[4096];

static void v4(struct ivsock_addr *a, const char *s)
{
	memset(a, 0, sizeof(*a));
	a->family = IVSOCK_AF_INET;
	FUZZ_ASSERT(inet_pton(AF_INET, s, a->bytes) == 1);
}

static void no_ring(void *arg, uint32_t peer, uint32_t vector)
{
	(void)arg;
	(void)peer;
	(void)vector;
}

/* Move some bytes each way over a validated view; sizes stay in bounds. */
static void exercise(struct ivsock_region *rg, struct ivsock_chan_view *v)
{
	ssize_t n;

	n = ivsock_ring_write(&v->tx, buf, 100, false);
	FUZZ_ASSERT(n <= 100);
	n = ivsock_ring_read(&v->rx, buf, sizeof(buf));
	FUZZ_ASSERT(n <= (ssize_t)rg->class[rg->default_class].ring_size);
	n = ivsock_ring_peek(&v->rx, buf, sizeof(buf), 3);
	FUZZ_ASSERT(n <= (ssize_t)rg->class[rg->default_class].ring_size);
	(void)ivsock_chan_peer_flags(rg, v);
	ivsock_chan_count(rg, v, 1, 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	struct ivsock_region_params pr;
	struct ivsock_region rg;
	struct ivsock_addr a0, a1, any6;
	struct ivsock_tuple t;
	struct ivsock_end_id c_end = { .vm = 0, .client = 1, .peer_id = 10, .vector = 1 };
	struct ivsock_end_id s_end = { .vm = 1, .client = 2, .peer_id = 11, .vector = 1 };
	struct ivsock_vm_info info;
	struct ivsock_chan_view view;
	uint32_t idx, gen, chan, chan_gen, i;
	uint8_t owner;
	int vm0, vm1, rc;

	if (!region) {
		region = aligned_alloc(4096, REGION_SIZE);
		FUZZ_ASSERT(region);
	}
	ivsock_region_params_single(&pr, 4096);
	pr.vm_cap = 2;
	pr.listener_cap = 4;
	pr.offer_cap = 4;
	pr.channel_cap = 4;
	FUZZ_ASSERT(ivsock_region_format(&rg, region, REGION_SIZE, &pr) == 0);
	memset(region + rg.sb->pool_off, 0, REGION_SIZE - rg.sb->pool_off);

	/* A plausible state to start from. */
	v4(&a0, "10.0.0.1");
	v4(&a1, "10.0.0.2");
	memset(&any6, 0, sizeof(any6));
	any6.family = IVSOCK_AF_INET6;
	vm0 = ivsock_dir_add(&rg, 10, 4, "vm0", NULL);
	vm1 = ivsock_dir_add(&rg, 11, 4, "vm1", NULL);
	FUZZ_ASSERT(vm0 == 0 && vm1 == 1);
	ivsock_dir_set_addrs(&rg, 0, &a0, 1);
	ivsock_dir_set_addrs(&rg, 1, &a1, 1);
	FUZZ_ASSERT(ivsock_listener_add(&rg, 1, 2, &any6, 80, 0, &gen) >= 0);
	memset(&t, 0, sizeof(t));
	t.src = a0;
	t.dst = a1;
	t.sport = 40000;
	t.dport = 80;
	FUZZ_ASSERT(ivsock_chan_open(&rg, &c_end, &t, ivsock_chan_dst_vm(&rg, c_end.vm, &t), rg.default_class, &idx, &gen) == 0);
	FUZZ_ASSERT(ivsock_offer_post(&rg, 0, 1, &t, idx, gen, &gen) >= 0);

	/* Hostile patches: (offset past the superblock, length 1..16, bytes). */
	while (in.n) {
		size_t off = 4096 + fuzz_u16(&in) % (REGION_SIZE - 4096);
		size_t len = 1 + fuzz_u8(&in) % 16, got;
		const uint8_t *p = fuzz_bytes(&in, len, &got);

		if (off + got > REGION_SIZE)
			got = REGION_SIZE - off;
		memcpy(region + off, p, got);
	}

	for (i = 0; i <= rg.vm_cap; i++) {
		rc = ivsock_dir_read(&rg, i, &info);
		if (rc == 0) {
			FUZZ_ASSERT(info.naddrs <= IVSOCK_VM_MAX_ADDRS);
			FUZZ_ASSERT(memchr(info.name, '\0', sizeof(info.name)));
			FUZZ_ASSERT(info.peer_id <= 65535);
		}
		(void)ivsock_dir_alive(&rg, i, 0);
	}
	rc = ivsock_dir_find_addr(&rg, &a1);
	FUZZ_ASSERT(rc == -ENOENT || (rc >= 0 && (uint32_t)rc < rg.vm_cap));
	rc = ivsock_dir_find_peer(&rg, 11);
	FUZZ_ASSERT(rc == -ENOENT || (rc >= 0 && (uint32_t)rc < rg.vm_cap));
	for (i = 0; i <= rg.vm_cap; i++) {
		rc = ivsock_listener_find(&rg, i, &a1, 80);
		FUZZ_ASSERT(rc == -ENOENT || (rc >= 0 && (uint32_t)rc < rg.listener_cap));
	}

	/* The acceptor's path: offer -> channel -> rings. */
	rc = ivsock_offer_take(&rg, &t, &chan, &chan_gen, &owner);
	if (rc == 0) {
		rc = ivsock_chan_accept(&rg, chan, chan_gen, owner, &s_end, &view);
		if (rc == 0) {
			exercise(&rg, &view);
			(void)ivsock_chan_close(&rg, view.idx, view.gen, IVSOCK_SIDE_ACCEPTOR, false);
		}
	}
	/* Every channel slot, as an acceptor and as a connector would see it. */
	for (i = 0; i <= rg.channel_cap; i++) {
		uint32_t g = 0;

		if (i < rg.channel_cap)
			g = ivsock_slot_get(&rg.channels[i].slot).gen;
		(void)ivsock_chan_state(&rg, i, g);
		if (ivsock_chan_view_connector(&rg, i, g, &view) == 0) {
			(void)ivsock_chan_learn_peer(&rg, &view);
			exercise(&rg, &view);
		}
		if (ivsock_chan_accept(&rg, i, g, 0, &s_end, &view) == 0)
			exercise(&rg, &view);
	}

	/* ivsockd reclaiming both VMs reads everything the VMs wrote. */
	for (i = 0; i < rg.vm_cap; i++) {
		(void)ivsock_chan_count_vm(&rg, (uint8_t)i);
		(void)ivsock_chan_release_vm(&rg, (uint8_t)i, no_ring, NULL);
		(void)ivsock_chan_reclaim_vm(&rg, (uint8_t)i, no_ring, NULL);
		(void)ivsock_offer_release_vm(&rg, (uint8_t)i);
		(void)ivsock_listener_release_vm(&rg, (uint8_t)i);
		(void)ivsock_block_release_vm(&rg, (uint8_t)i);
		FUZZ_ASSERT(ivsock_block_pool_used(&rg, (uint8_t)i) <= rg.nblocks);
	}
	return 0;
}
