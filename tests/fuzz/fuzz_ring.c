// SPDX-License-Identifier: MIT
/*
 * Fuzzes one SPSC ring as seen by one side while the fuzzer plays the other
 * side by rewriting the shared header words between operations: attach,
 * read/peek/consume/readv on the consumer side, write/writev/publish/
 * take_back on the producer side. The ring lives in an exact-size heap
 * buffer so ASan reports any access outside it.
 */
#include <errno.h>

#include "ivsock/ring.h"
#include "fuzz.h"

#define MAX_RING 512

static uint8_t src[2 * MAX_RING], dst[2 * MAX_RING + 64];

static void poke(struct fuzz_in *in, struct ivsock_ring_flat *h)
{
	uint32_t v = fuzz_u32(in);

	switch (fuzz_u8(in) % 8) {
	case 0: ivsock_store_relaxed(&h->p.tail, v); break;
	case 1: ivsock_store_relaxed(&h->c.head, v); break;
	case 2: ivsock_store_relaxed(&h->p.prod_flags, v); break;
	case 3: ivsock_store_relaxed(&h->c.cons_flags, v); break;
	case 4: ivsock_store_relaxed(&h->c.cons_sleep, v); break;
	case 5: ivsock_store_relaxed(&h->p.prod_sleep, v); break;
	/* the other side moves its index by a small step, as it would */
	case 6: ivsock_store_relaxed(&h->p.tail, ivsock_load_relaxed(&h->p.tail) + (v & 0x3ff)); break;
	default: ivsock_store_relaxed(&h->c.head, ivsock_load_relaxed(&h->c.head) + (v & 0x3ff)); break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	uint8_t mode = fuzz_u8(&in);
	uint32_t ring_size = 64U << (mode & 3);
	int role = (mode & 4) ? IVSOCK_RING_PRODUCER : IVSOCK_RING_CONSUMER;
	struct ivsock_ring_flat *h;
	struct ivsock_ring r;
	uint8_t *mem;
	int npoke, ops = 0;

	mem = malloc(IVSOCK_RING_FOOTPRINT(ring_size));
	FUZZ_ASSERT(mem);
	FUZZ_ASSERT(ivsock_ring_format_flat(mem, ring_size) == 0);
	h = (struct ivsock_ring_flat *)mem;
	/* The header as the other side left it. */
	for (npoke = (mode >> 3) & 7; npoke > 0; npoke--)
		poke(&in, h);
	if (ivsock_ring_attach_flat(&r, mem, ring_size, role) < 0)
		goto out;

	while (in.n && ops++ < 256) {
		uint8_t op = fuzz_u8(&in);
		size_t len = fuzz_u16(&in) % (2 * MAX_RING);
		struct iovec iov[2] = {
			{ dst, len / 2 }, { dst + len / 2 + 32, len - len / 2 },
		};
		ssize_t n;
		long l;

		switch (op % 10) {
		case 0:
			poke(&in, h);
			break;
		case 1:
			if (role == IVSOCK_RING_PRODUCER) {
				n = ivsock_ring_write(&r, src, len, op & 0x80);
				FUZZ_ASSERT(n <= (ssize_t)len && n <= (ssize_t)ring_size);
			} else {
				n = ivsock_ring_read(&r, dst, len);
				FUZZ_ASSERT(n <= (ssize_t)len && n <= (ssize_t)ring_size);
			}
			break;
		case 2:
			if (role == IVSOCK_RING_PRODUCER) {
				struct iovec wv[2] = { { src, len / 2 }, { src + 7, len - len / 2 } };

				n = ivsock_ring_writev(&r, wv, 2, op & 0x80);
			} else {
				n = ivsock_ring_readv(&r, iov, 2);
			}
			FUZZ_ASSERT(n <= (ssize_t)len && n <= (ssize_t)ring_size);
			break;
		case 3:
			if (role == IVSOCK_RING_CONSUMER) {
				n = ivsock_ring_peek(&r, dst, len, fuzz_u16(&in) % (3 * MAX_RING));
				FUZZ_ASSERT(n <= (ssize_t)len && n <= (ssize_t)ring_size);
			} else {
				ivsock_ring_publish(&r);
			}
			break;
		case 4:
			if (role == IVSOCK_RING_CONSUMER) {
				n = ivsock_ring_consume(&r, len);
				FUZZ_ASSERT(n <= (ssize_t)len && n <= (ssize_t)ring_size);
			} else {
				n = ivsock_ring_take_back(&r, dst, len);
				FUZZ_ASSERT(n <= (ssize_t)len && n <= (ssize_t)ring_size);
			}
			break;
		case 5:
			l = role == IVSOCK_RING_CONSUMER ? ivsock_ring_readable(&r)
							 : ivsock_ring_writable(&r);
			FUZZ_ASSERT(l <= (long)ring_size);
			if (role == IVSOCK_RING_PRODUCER) {
				l = ivsock_ring_unconsumed(&r);
				FUZZ_ASSERT(l <= (long)ring_size);
			}
			break;
		case 6:
			if (role == IVSOCK_RING_CONSUMER) {
				(void)ivsock_ring_consumer_prepare_sleep(&r);
				(void)ivsock_ring_producer_needs_wake(&r);
			} else {
				(void)ivsock_ring_producer_prepare_sleep(&r);
				(void)ivsock_ring_consumer_needs_wake(&r);
			}
			break;
		case 7:
			if (role == IVSOCK_RING_CONSUMER)
				ivsock_ring_close_read(&r);
			else
				ivsock_ring_close_write(&r, op & 0x80);
			break;
		case 8:
			(void)ivsock_ring_peer_flags(&r);
			break;
		default:
			/* re-attach, as after fork or a hand-over */
			if (ivsock_ring_attach_flat(&r, mem, ring_size, role) < 0)
				goto out;
			break;
		}
	}
out:
	free(mem);
	return 0;
}
