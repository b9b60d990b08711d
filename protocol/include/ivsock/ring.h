/* SPDX-License-Identifier: MIT */
/*
 * Single-producer single-consumer byte ring living in shared memory: one
 * direction of a channel. The header is four cache lines, two written only by
 * the producer and two written only by the consumer; each side keeps its own
 * index in private memory and only publishes it, so corrupting a side's
 * shared words can never mislead that side, and every word read from the
 * other side is validated before use.
 */
#ifndef IVSOCK_RING_H
#define IVSOCK_RING_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "ivsock/barrier.h"

/* Flags in ivsock_ring_prod.prod_flags (written by the producer only). */
enum {
	IVSOCK_RING_EOF   = 1U << 0, /* producer will write no more (shutdown/close) */
	IVSOCK_RING_RESET = 1U << 1, /* producer aborted: reader reports ECONNRESET */
};

/* Flags in ivsock_ring_cons.cons_flags (written by the consumer only). */
enum {
	IVSOCK_RING_RCLOSED = 1U << 0, /* consumer gone: writes fail with EPIPE */
};

/*
 * Shared words. Sleep/wake uses sequence pairs so every word keeps a single
 * writer: the consumer bumps cons_sleep before sleeping; the producer, after
 * publishing, rings the doorbell iff cons_sleep != cons_sleep_seen and then
 * copies it into cons_sleep_seen. Symmetric for a producer waiting for space.
 *
 * Four cache lines, one writer each, in two halves that may live in
 * different pages (layout v4: the producer's half sits in the ctl page of
 * the end that produces, the consumer's half in the ctl page of the end that
 * consumes; a process then writes only its own page). The index of each
 * side sits alone on a "hot" line that moves on every publication; flags and
 * sleep words sit on a "cold" line that changes only at close or sleep, so
 * the per-message wake-up check of the other side reads a line it already
 * has cached.
 */
struct ivsock_ring_prod {
	/* --- producer hot line: written only by the producer --- */
	ivsock_a32 tail;            /* free-running count of bytes published */
	uint8_t pad0[IVSOCK_CACHELINE - 4];
	/* --- producer cold line: written only by the producer --- */
	ivsock_a32 prod_flags;      /* IVSOCK_RING_EOF | IVSOCK_RING_RESET */
	ivsock_a32 prod_sleep;      /* bumped when the producer waits for space */
	ivsock_a32 cons_sleep_seen; /* last cons_sleep the producer answered */
	uint8_t pad1[IVSOCK_CACHELINE - 12];
};

struct ivsock_ring_cons {
	/* --- consumer hot line: written only by the consumer --- */
	ivsock_a32 head;            /* free-running count of bytes consumed */
	uint8_t pad2[IVSOCK_CACHELINE - 4];
	/* --- consumer cold line: written only by the consumer --- */
	ivsock_a32 cons_flags;      /* IVSOCK_RING_RCLOSED */
	ivsock_a32 cons_sleep;      /* bumped when the consumer waits for data */
	ivsock_a32 prod_sleep_seen; /* last prod_sleep the consumer answered */
	uint8_t pad3[IVSOCK_CACHELINE - 12];
};
_Static_assert(sizeof(struct ivsock_ring_prod) == 2 * IVSOCK_CACHELINE,
	       "producer half is two cache lines");
_Static_assert(sizeof(struct ivsock_ring_cons) == 2 * IVSOCK_CACHELINE,
	       "consumer half is two cache lines");

/* The shared words of a flat ring (ivsock_ring_format_flat()): producer
 * half, then consumer half, then the data. */
struct ivsock_ring_flat {
	struct ivsock_ring_prod p;
	struct ivsock_ring_cons c;
};

/* Bytes a flat ring (prod, cons, data contiguous: ivsock_ring_format_flat())
 * with data_size bytes of payload occupies in memory. */
#define IVSOCK_RING_FOOTPRINT(data_size) \
	(sizeof(struct ivsock_ring_prod) + sizeof(struct ivsock_ring_cons) + \
	 (size_t)(data_size))

enum ivsock_ring_role { IVSOCK_RING_PRODUCER = 1, IVSOCK_RING_CONSUMER = 2 };

/* Process-private view of one ring. Never placed in shared memory. */
struct ivsock_ring {
	struct ivsock_ring_prod *p; /* producer's words (shared) */
	struct ivsock_ring_cons *c; /* consumer's words (shared) */
	uint8_t *data;
	uint32_t size;      /* power of two, trusted (from our own configuration) */
	uint32_t mask;
	uint32_t own;       /* our index (tail for producer, head for consumer) */
	/* Value of own last published to shared memory. Atomic (relaxed) so
	 * that readiness checks of other threads (poll, FIONREAD) can read our
	 * own index here instead of reading it back from shared memory, where
	 * anyone mapping the region could have overwritten it. */
	ivsock_a32 published;
	uint32_t peer;      /* cached, validated index of the other side */
	int role;
	int broken;         /* sticky -EPROTO once the peer wrote garbage */
	/* Our own words of the shared header, kept here and only ever stored
	 * to shared memory (never read back after attach): our sleep sequence
	 * (prod_sleep / cons_sleep), the other side's sleep sequence we last
	 * answered (cons_sleep_seen / prod_sleep_seen), our flags (prod_flags
	 * / cons_flags). */
	uint32_t my_sleep, my_seen, my_flags;
};

/* Is n a power of two between 64 bytes and 1 GiB? */
bool ivsock_ring_size_valid(size_t n);

/*
 * Format a ring's shared words (zero indices, no flags). Done once by whoever
 * allocates the ring, before publishing it to anyone.
 * @return 0, or -EINVAL if data_size is not a valid ring size.
 */
int ivsock_ring_format(struct ivsock_ring_prod *p, struct ivsock_ring_cons *c,
		       uint32_t data_size);

/*
 * Attach a private view to a formatted ring whose producer words are at p,
 * consumer words at c and data_size bytes of data at data. Our own index is
 * read once from shared memory (so a view can be re-attached after fork or
 * hand-over) and checked against the peer's.
 * @return 0, -EINVAL (bad size/role), -EPROTO (indices inconsistent).
 */
int ivsock_ring_attach(struct ivsock_ring *r, struct ivsock_ring_prod *p,
		       struct ivsock_ring_cons *c, void *data, uint32_t data_size,
		       enum ivsock_ring_role role);

/*
 * One flat buffer of IVSOCK_RING_FOOTPRINT(size) bytes: producer words (two
 * lines), consumer words (two lines), then the data (the v3 byte layout; for
 * tests and ring_bench). Same returns as above.
 */
int ivsock_ring_format_flat(void *mem, uint32_t data_size);
int ivsock_ring_attach_flat(struct ivsock_ring *r, void *mem, uint32_t data_size,
			    enum ivsock_ring_role role);

/* Re-attach a view in place (after fork or hand-over: re-read our own index
 * from shared memory), same pointers and size. */
static inline int ivsock_ring_reattach(struct ivsock_ring *r)
{
	return ivsock_ring_attach(r, r->p, r->c, r->data, r->size,
				  (enum ivsock_ring_role)r->role);
}

/* ---- producer side ---- */

/* Free space, or -EPROTO if the consumer's index is corrupt. */
long ivsock_ring_writable(struct ivsock_ring *r);

/*
 * Copy up to len bytes in. With more=true the new tail is kept private
 * (batched publication): call ivsock_ring_publish() later.
 * @return bytes copied (0 if full), -EPIPE if the consumer closed,
 *         -EPROTO if the consumer's index is corrupt.
 */
ssize_t ivsock_ring_write(struct ivsock_ring *r, const void *buf, size_t len, bool more);
ssize_t ivsock_ring_writev(struct ivsock_ring *r, const struct iovec *iov, int iovcnt, bool more);

/* Publish privately written bytes (release). */
void ivsock_ring_publish(struct ivsock_ring *r);

/*
 * After publishing: does the consumer need a doorbell? Full fence, then
 * compare cons_sleep with cons_sleep_seen; if they differ, record it and
 * return true (the caller rings exactly once).
 */
bool ivsock_ring_consumer_needs_wake(struct ivsock_ring *r);

/*
 * Producer about to sleep for space: bump prod_sleep, full fence, re-check.
 * @return 1 to go to sleep, 0 if space appeared (do not sleep),
 *         -EPIPE / -EPROTO as for write.
 */
int ivsock_ring_producer_prepare_sleep(struct ivsock_ring *r);

/* Mark end of stream (shutdown(SHUT_WR)/close) or abort (reset=true). */
void ivsock_ring_close_write(struct ivsock_ring *r, bool reset);

/*
 * Lossless fallback: take back bytes the consumer has not consumed, copying
 * them into buf (up to len) and rewinding the tail. Only legal while the
 * consumer is known not to be attached (the caller won that race through the
 * channel state). @return bytes taken back, or -EPROTO.
 */
ssize_t ivsock_ring_take_back(struct ivsock_ring *r, void *buf, size_t len);

/* Bytes written but not yet consumed (for SIOCOUTQ-like accounting). */
long ivsock_ring_unconsumed(struct ivsock_ring *r);

/* ---- consumer side ---- */

/* Bytes readable now, or -EPROTO. */
long ivsock_ring_readable(struct ivsock_ring *r);

/*
 * Copy out up to len bytes and release the space.
 * @return bytes (>0); 0 at end of stream; -EAGAIN if empty and open;
 *         -ECONNRESET if the producer reset; -EPROTO if corrupt.
 */
ssize_t ivsock_ring_read(struct ivsock_ring *r, void *buf, size_t len);
ssize_t ivsock_ring_readv(struct ivsock_ring *r, const struct iovec *iov, int iovcnt);

/* Copy out without consuming, starting offset bytes in. Same returns. */
ssize_t ivsock_ring_peek(struct ivsock_ring *r, void *buf, size_t len, size_t offset);

/* Discard up to len readable bytes (after a peek). @return bytes or -errno. */
ssize_t ivsock_ring_consume(struct ivsock_ring *r, size_t len);

/* After consuming: does the producer need a doorbell? (see consumer_needs_wake) */
bool ivsock_ring_producer_needs_wake(struct ivsock_ring *r);

/*
 * Consumer about to sleep for data: bump cons_sleep, full fence, re-check.
 * @return 1 to sleep, 0 if data or EOF/reset appeared, -EPROTO.
 */
int ivsock_ring_consumer_prepare_sleep(struct ivsock_ring *r);

/* Consumer leaves: writers get EPIPE from now on. */
void ivsock_ring_close_read(struct ivsock_ring *r);

/* Producer's flags (EOF/RESET) as seen by the consumer, acquire. */
uint32_t ivsock_ring_peer_flags(const struct ivsock_ring *r);

/* ---- lock-free snapshots for readiness checks (any thread) ----
 * Our own index comes from the private view (r->published), never from
 * shared memory; the other side's is loaded once and validated, without
 * touching the view's cache. */

/* Our own published index (relaxed). */
static inline uint32_t ivsock_ring_own_index(const struct ivsock_ring *r)
{
	return ivsock_load_relaxed(&r->published);
}

/* Consumer: bytes the producer published that we have not consumed, or
 * -EPROTO if its tail is out of range. */
long ivsock_ring_snap_readable(const struct ivsock_ring *r);

/* Producer: bytes we published that the consumer has not consumed, or
 * -EPROTO if its head is out of range. */
long ivsock_ring_snap_unconsumed(const struct ivsock_ring *r);

/* Consumer's flags (RCLOSED) as seen by the producer, acquire. */
uint32_t ivsock_ring_cons_flags(const struct ivsock_ring *r);

#endif
