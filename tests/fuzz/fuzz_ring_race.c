// SPDX-License-Identifier: MIT
/*
 * Concurrent mode for the SPSC ring (protocol/src/ring.c): one side (producer
 * or consumer, from the input) runs a fuzzed sequence of ring calls while a
 * scribbler thread rewrites the other side's shared words AT THE SAME TIME
 * (and, in "third party" mode, our own published words too). The ring sits
 * in guarded memory ending at a PROT_NONE page; caller buffers are
 * exact-size heap blocks. Checked whatever the peer does:
 *  - no access outside the ring (guard page, ASan), and no byte written
 *    into the header's padding (nothing delivered outside the data area);
 *  - a call never reports more than it was asked for or than the ring holds;
 *  - the side's private view stays sane: in flight <= size, and its own
 *    index moves exactly by what the calls returned;
 *  - every call returns (watchdog).
 */
#include <errno.h>

#include "ivsock/ring.h"
#include "scribble.h"

#define MAX_RING 1024

static uint8_t src[2 * MAX_RING];
static uint8_t *ringmem[4];

static bool pads_clean(const struct ivsock_ring_flat *h)
{
	static const uint8_t zero[IVSOCK_CACHELINE];

	return !memcmp(h->p.pad0, zero, sizeof(h->p.pad0)) && !memcmp(h->p.pad1, zero, sizeof(h->p.pad1)) &&
	       !memcmp(h->c.pad2, zero, sizeof(h->c.pad2)) && !memcmp(h->c.pad3, zero, sizeof(h->c.pad3));
}

static void check_view(const struct ivsock_ring *r, uint32_t size)
{
	if (r->broken)
		return;
	if (r->role == IVSOCK_RING_PRODUCER)
		FUZZ_ASSERT((uint32_t)(r->own - r->peer) <= size);
	else
		FUZZ_ASSERT((uint32_t)(r->peer - r->own) <= size);
	FUZZ_ASSERT(r->size == size && r->mask == size - 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	uint8_t mode = fuzz_u8(&in);
	unsigned szi = mode & 3;
	uint32_t ring_size = 64U << (2 * szi);
	int role = (mode & 4) ? IVSOCK_RING_PRODUCER : IVSOCK_RING_CONSUMER;
	bool third = mode & 8;   /* a third party also writes our own words */
	struct ivsock_ring_flat *h;
	static struct scribbler sc;
	struct ivsock_ring r;
	int ops = 0;

	if (!ringmem[szi])
		ringmem[szi] = fuzz_guarded_alloc(IVSOCK_RING_FOOTPRINT(ring_size));
	h = (struct ivsock_ring_flat *)ringmem[szi];
	memset(h, 0, IVSOCK_RING_FOOTPRINT(ring_size));
	FUZZ_ASSERT(ivsock_ring_format_flat(h, ring_size) == 0);
	if (ivsock_ring_attach_flat(&r, h, ring_size, role) < 0)
		return 0;

	scrib_init(&sc);
	/* The other side's words. */
	if (role == IVSOCK_RING_PRODUCER) {
		scrib_add(&sc, &h->c.head, 4, ring_size);
		scrib_add(&sc, &h->c.cons_flags, 4, IVSOCK_RING_RCLOSED);
		scrib_add(&sc, &h->c.cons_sleep, 4, 1);
		scrib_add(&sc, &h->c.prod_sleep_seen, 4, 1);
	} else {
		scrib_add(&sc, &h->p.tail, 4, ring_size);
		scrib_add(&sc, &h->p.prod_flags, 4, IVSOCK_RING_EOF | IVSOCK_RING_RESET);
		scrib_add(&sc, &h->p.prod_sleep, 4, 1);
		scrib_add(&sc, &h->p.cons_sleep_seen, 4, 1);
	}
	if (third) {
		if (role == IVSOCK_RING_PRODUCER) {
			scrib_add(&sc, &h->p.tail, 4, ring_size);
			scrib_add(&sc, &h->p.prod_flags, 4, IVSOCK_RING_EOF);
			scrib_add(&sc, &h->p.prod_sleep, 4, 1);
			scrib_add(&sc, &h->p.cons_sleep_seen, 4, 1);
		} else {
			scrib_add(&sc, &h->c.head, 4, ring_size);
			scrib_add(&sc, &h->c.cons_flags, 4, IVSOCK_RING_RCLOSED);
			scrib_add(&sc, &h->c.cons_sleep, 4, 1);
			scrib_add(&sc, &h->c.prod_sleep_seen, 4, 1);
		}
	}
	scrib_from_input(&sc, &in);
	scrib_start(&sc);

	while (in.n && ops++ < 256) {
		uint8_t op = fuzz_u8(&in);
		size_t len = fuzz_u16(&in) % (2 * MAX_RING) + 1;
		uint8_t *dst = malloc(len);      /* exact size: ASan sees overruns */
		uint32_t own0 = r.own;
		ssize_t n = 0;
		long l;

		FUZZ_ASSERT(dst);
		switch (op % 10) {
		case 0:
		case 1:
			if (role == IVSOCK_RING_PRODUCER) {
				n = WD(ivsock_ring_write(&r, src, len, op & 0x80));
				FUZZ_ASSERT(n <= (ssize_t)len && n <= (ssize_t)ring_size);
				if (n > 0)
					FUZZ_ASSERT(r.own - own0 == (uint32_t)n);
			} else {
				n = WD(ivsock_ring_read(&r, dst, len));
				FUZZ_ASSERT(n <= (ssize_t)len && n <= (ssize_t)ring_size);
				if (n > 0)
					FUZZ_ASSERT(r.own - own0 == (uint32_t)n);
			}
			break;
		case 2:
			if (role == IVSOCK_RING_PRODUCER) {
				struct iovec wv[2] = { { src, len / 2 }, { src + 7, len - len / 2 } };

				n = WD(ivsock_ring_writev(&r, wv, 2, op & 0x80));
			} else {
				struct iovec iov[2] = { { dst, len / 2 }, { dst + len / 2, len - len / 2 } };

				n = WD(ivsock_ring_readv(&r, iov, 2));
			}
			FUZZ_ASSERT(n <= (ssize_t)len && n <= (ssize_t)ring_size);
			if (n > 0)
				FUZZ_ASSERT(r.own - own0 == (uint32_t)n);
			break;
		case 3:
			if (role == IVSOCK_RING_CONSUMER) {
				n = WD(ivsock_ring_peek(&r, dst, len, fuzz_u16(&in) % (3 * MAX_RING)));
				FUZZ_ASSERT(n <= (ssize_t)len && n <= (ssize_t)ring_size);
				FUZZ_ASSERT(r.own == own0);
			} else {
				WDV(ivsock_ring_publish(&r));
			}
			break;
		case 4:
			if (role == IVSOCK_RING_CONSUMER) {
				n = WD(ivsock_ring_consume(&r, len));
				FUZZ_ASSERT(n <= (ssize_t)len && n <= (ssize_t)ring_size);
				if (n > 0)
					FUZZ_ASSERT(r.own - own0 == (uint32_t)n);
			} else {
				n = WD(ivsock_ring_take_back(&r, dst, len));
				FUZZ_ASSERT(n <= (ssize_t)len && n <= (ssize_t)ring_size);
			}
			break;
		case 5:
			l = role == IVSOCK_RING_CONSUMER ? WD(ivsock_ring_readable(&r))
							 : WD(ivsock_ring_writable(&r));
			FUZZ_ASSERT(l <= (long)ring_size);
			if (role == IVSOCK_RING_PRODUCER) {
				l = WD(ivsock_ring_unconsumed(&r));
				FUZZ_ASSERT(l <= (long)ring_size);
			}
			break;
		case 6:
			if (role == IVSOCK_RING_CONSUMER) {
				(void)WD(ivsock_ring_consumer_prepare_sleep(&r));
				(void)WD(ivsock_ring_producer_needs_wake(&r));
			} else {
				(void)WD(ivsock_ring_producer_prepare_sleep(&r));
				(void)WD(ivsock_ring_consumer_needs_wake(&r));
			}
			break;
		case 7:
			if (role == IVSOCK_RING_CONSUMER)
				WDV(ivsock_ring_close_read(&r));
			else
				WDV(ivsock_ring_close_write(&r, op & 0x80));
			break;
		case 8:
			(void)WD(ivsock_ring_peer_flags(&r));
			break;
		default:
			/* re-attach, as after fork or a hand-over: reads our own
			 * index back from shared memory, validated */
			if (WD(ivsock_ring_attach_flat(&r, h, ring_size, role)) < 0) {
				free(dst);
				goto out;
			}
			break;
		}
		free(dst);
		check_view(&r, ring_size);
		FUZZ_ASSERT(pads_clean(h));
	}
out:
	scrib_stop(&sc);
	return 0;
}
