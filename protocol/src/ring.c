// SPDX-License-Identifier: MIT
/*
 * SPSC byte ring: copy-in/copy-out with wrap-around, batched publication,
 * validation of every index the other side wrote, and the sleep/wake rule
 * (DESIGN §5) expressed with single-writer sequence words.
 */
#include <errno.h>
#include <string.h>

#include "ivsock/ring.h"

bool ivsock_ring_size_valid(size_t n)
{
	return n >= 64 && n <= (1UL << 30) && (n & (n - 1)) == 0;
}

int ivsock_ring_format(struct ivsock_ring_prod *p, struct ivsock_ring_cons *c,
		       uint32_t data_size)
{
	if (!p || !c || !ivsock_ring_size_valid(data_size))
		return -EINVAL;
	ivsock_store_relaxed(&p->tail, 0);
	ivsock_store_relaxed(&p->prod_flags, 0);
	ivsock_store_relaxed(&p->prod_sleep, 0);
	ivsock_store_relaxed(&p->cons_sleep_seen, 0);
	ivsock_store_relaxed(&c->head, 0);
	ivsock_store_relaxed(&c->cons_flags, 0);
	ivsock_store_relaxed(&c->cons_sleep, 0);
	/* Pairs with the acquire of whoever is later handed this ring. */
	ivsock_store_release(&c->prod_sleep_seen, 0);
	return 0;
}

int ivsock_ring_attach(struct ivsock_ring *r, struct ivsock_ring_prod *p,
		       struct ivsock_ring_cons *c, void *data, uint32_t data_size,
		       enum ivsock_ring_role role)
{
	uint32_t head, tail;

	if (!r || !p || !c || !data || !ivsock_ring_size_valid(data_size))
		return -EINVAL;
	if (role != IVSOCK_RING_PRODUCER && role != IVSOCK_RING_CONSUMER)
		return -EINVAL;
	memset(r, 0, sizeof(*r));
	r->p = p;
	r->c = c;
	r->data = data;
	r->size = data_size;
	r->mask = data_size - 1;
	r->role = role;
	/* Pairs with the release stores of both sides' indices. Our own words
	 * are read here once (attach after fork or hand-over) and from then on
	 * only stored. */
	head = ivsock_load_acquire(&c->head);
	tail = ivsock_load_acquire(&p->tail);
	if ((uint32_t)(tail - head) > data_size)
		return -EPROTO;
	if (role == IVSOCK_RING_PRODUCER) {
		r->own = tail;
		r->peer = head;
		r->my_sleep = ivsock_load_relaxed(&p->prod_sleep);
		r->my_seen = ivsock_load_relaxed(&p->cons_sleep_seen);
		r->my_flags = ivsock_load_relaxed(&p->prod_flags);
	} else {
		r->own = head;
		r->peer = tail;
		r->my_sleep = ivsock_load_relaxed(&c->cons_sleep);
		r->my_seen = ivsock_load_relaxed(&c->prod_sleep_seen);
		r->my_flags = ivsock_load_relaxed(&c->cons_flags);
	}
	ivsock_store_relaxed(&r->published, r->own);
	return 0;
}

int ivsock_ring_format_flat(void *mem, uint32_t data_size)
{
	struct ivsock_ring_prod *p = mem;

	if (!mem)
		return -EINVAL;
	return ivsock_ring_format(p, (struct ivsock_ring_cons *)(p + 1), data_size);
}

int ivsock_ring_attach_flat(struct ivsock_ring *r, void *mem, uint32_t data_size,
			    enum ivsock_ring_role role)
{
	struct ivsock_ring_prod *p = mem;
	struct ivsock_ring_cons *c;

	if (!mem)
		return -EINVAL;
	c = (struct ivsock_ring_cons *)(p + 1);
	return ivsock_ring_attach(r, p, c, c + 1, data_size, role);
}

/* ---------------- producer ---------------- */

/*
 * Reload the consumer's head once and validate it: it may only move forward,
 * never past what we published.
 */
static int refresh_head(struct ivsock_ring *r)
{
	uint32_t head, pub = ivsock_load_relaxed(&r->published);

	if (r->broken)
		return r->broken;
	/* Pairs with the release store of head in publish_head(): bytes the
	 * consumer has released are no longer being read. */
	head = ivsock_load_acquire(&r->c->head);
	if ((uint32_t)(head - r->peer) > (uint32_t)(pub - r->peer)) {
		r->broken = -EPROTO;
		return -EPROTO;
	}
	r->peer = head;
	return 0;
}

long ivsock_ring_writable(struct ivsock_ring *r)
{
	int rc = refresh_head(r);

	if (rc < 0)
		return rc;
	return (long)r->size - (long)(uint32_t)(r->own - r->peer);
}

static void copy_in(struct ivsock_ring *r, uint32_t pos, const void *src, size_t n)
{
	uint32_t off = pos & r->mask;
	size_t first = r->size - off;

	if (first > n)
		first = n;
	memcpy(r->data + off, src, first);
	if (n > first)
		memcpy(r->data, (const uint8_t *)src + first, n - first);
}

void ivsock_ring_publish(struct ivsock_ring *r)
{
	if (ivsock_load_relaxed(&r->published) == r->own)
		return;
	/* Pairs with the acquire of tail in refresh_tail(): the bytes copied
	 * in are visible before the new tail is. */
	ivsock_store_release(&r->p->tail, r->own);
	ivsock_store_relaxed(&r->published, r->own);
}

static ssize_t write_prologue(struct ivsock_ring *r, size_t *space)
{
	uint32_t used;
	uint32_t cflags;

	if (r->broken)
		return r->broken;
	cflags = ivsock_load_relaxed(&r->c->cons_flags);
	if (cflags & IVSOCK_RING_RCLOSED)
		return -EPIPE;
	used = r->own - r->peer;
	if (used == r->size || used > r->size) {
		int rc = refresh_head(r);

		if (rc < 0)
			return rc;
		used = r->own - r->peer;
	}
	*space = r->size - used;
	return 0;
}

ssize_t ivsock_ring_write(struct ivsock_ring *r, const void *buf, size_t len, bool more)
{
	size_t space;
	ssize_t rc = write_prologue(r, &space);

	if (rc < 0)
		return rc;
	if (space < len) {
		/* The cached head may be stale: look again before giving a
		 * short count. */
		rc = refresh_head(r);
		if (rc < 0)
			return rc;
		space = r->size - (uint32_t)(r->own - r->peer);
	}
	if (len > space)
		len = space;
	if (len == 0)
		return 0;
	copy_in(r, r->own, buf, len);
	r->own += (uint32_t)len;
	if (!more)
		ivsock_ring_publish(r);
	return (ssize_t)len;
}

ssize_t ivsock_ring_writev(struct ivsock_ring *r, const struct iovec *iov, int iovcnt, bool more)
{
	size_t space, done = 0;
	ssize_t rc = write_prologue(r, &space);
	int i;

	if (rc < 0)
		return rc;
	rc = refresh_head(r);
	if (rc < 0)
		return rc;
	space = r->size - (uint32_t)(r->own - r->peer);
	for (i = 0; i < iovcnt && space > 0; i++) {
		size_t n = iov[i].iov_len < space ? iov[i].iov_len : space;

		if (n == 0)
			continue;
		copy_in(r, r->own, iov[i].iov_base, n);
		r->own += (uint32_t)n;
		space -= n;
		done += n;
	}
	if (!more)
		ivsock_ring_publish(r);
	return (ssize_t)done;
}

bool ivsock_ring_consumer_needs_wake(struct ivsock_ring *r)
{
	uint32_t want, seen;

	/* Pairs with the fence in ivsock_ring_consumer_prepare_sleep(): either
	 * the consumer sees our new tail or we see its cons_sleep bump. */
	ivsock_smp_mb();
	want = ivsock_load_relaxed(&r->c->cons_sleep); /* once; any value is fine */
	seen = r->my_seen;
	if (want == seen)
		return false;
	r->my_seen = want;
	ivsock_store_relaxed(&r->p->cons_sleep_seen, want);
	return true;
}

int ivsock_ring_producer_prepare_sleep(struct ivsock_ring *r)
{
	uint32_t seq;
	long space;

	if (r->broken)
		return r->broken;
	ivsock_ring_publish(r);
	seq = ++r->my_sleep;
	ivsock_store_relaxed(&r->p->prod_sleep, seq);
	/* Pairs with the fence in ivsock_ring_producer_needs_wake(). */
	ivsock_smp_mb();
	if (ivsock_load_relaxed(&r->c->cons_flags) & IVSOCK_RING_RCLOSED)
		return -EPIPE;
	space = ivsock_ring_writable(r);
	if (space < 0)
		return (int)space;
	return space > 0 ? 0 : 1;
}

void ivsock_ring_close_write(struct ivsock_ring *r, bool reset)
{
	uint32_t f;

	ivsock_ring_publish(r);
	f = r->my_flags |= IVSOCK_RING_EOF | (reset ? IVSOCK_RING_RESET : 0);
	/* Pairs with the acquire in ivsock_ring_peer_flags(): all data is
	 * published before EOF is. */
	ivsock_store_release(&r->p->prod_flags, f);
}

ssize_t ivsock_ring_take_back(struct ivsock_ring *r, void *buf, size_t len)
{
	uint32_t n, off, first;
	int rc = refresh_head(r);

	if (rc < 0)
		return rc;
	n = r->own - r->peer;
	if (n > len)
		return -ENOBUFS;
	off = r->peer & r->mask;
	first = r->size - off;
	if (first > n)
		first = n;
	memcpy(buf, r->data + off, first);
	if (n > first)
		memcpy((uint8_t *)buf + first, r->data, n - first);
	r->own = r->peer;
	ivsock_store_release(&r->p->tail, r->own);
	ivsock_store_relaxed(&r->published, r->own);
	return n;
}

long ivsock_ring_unconsumed(struct ivsock_ring *r)
{
	int rc = refresh_head(r);

	if (rc < 0)
		return rc;
	return (long)(uint32_t)(r->own - r->peer);
}

/* ---------------- consumer ---------------- */

static int refresh_tail(struct ivsock_ring *r)
{
	uint32_t tail;

	if (r->broken)
		return r->broken;
	/* Pairs with the release store of tail in ivsock_ring_publish(). */
	tail = ivsock_load_acquire(&r->p->tail);
	if ((uint32_t)(tail - r->own) > r->size) {
		r->broken = -EPROTO;
		return -EPROTO;
	}
	r->peer = tail;
	return 0;
}

uint32_t ivsock_ring_peer_flags(const struct ivsock_ring *r)
{
	/* Pairs with the release in ivsock_ring_close_write(). */
	return ivsock_load_acquire(&r->p->prod_flags);
}

long ivsock_ring_readable(struct ivsock_ring *r)
{
	int rc = refresh_tail(r);

	if (rc < 0)
		return rc;
	return (long)(uint32_t)(r->peer - r->own);
}

/* Nothing buffered: tell end of stream, reset and "try later" apart. */
static ssize_t empty_status(struct ivsock_ring *r)
{
	uint32_t f = ivsock_ring_peer_flags(r);
	int rc;

	/* An honest peer publishes RESET with EOF; a RESET alone still ends
	 * the stream (poll reports it readable: recv must not say EAGAIN). */
	if (!(f & (IVSOCK_RING_EOF | IVSOCK_RING_RESET)))
		return -EAGAIN;
	/* EOF was published after the last data: look once more. */
	rc = refresh_tail(r);
	if (rc < 0)
		return rc;
	if (r->peer != r->own)
		return 1; /* data after all: caller retries */
	return (f & IVSOCK_RING_RESET) ? -ECONNRESET : 0;
}

static void publish_head(struct ivsock_ring *r)
{
	/* Pairs with the acquire of head in refresh_head(): we are done
	 * reading the bytes before the producer may overwrite them. */
	ivsock_store_release(&r->c->head, r->own);
	ivsock_store_relaxed(&r->published, r->own);
}

static void copy_out(struct ivsock_ring *r, uint32_t pos, void *dst, size_t n)
{
	uint32_t off = pos & r->mask;
	size_t first = r->size - off;

	if (first > n)
		first = n;
	memcpy(dst, r->data + off, first);
	if (n > first)
		memcpy((uint8_t *)dst + first, r->data, n - first);
}

/* Bytes available (>0) after refresh, or a terminal status (<=0). */
static ssize_t avail_or_status(struct ivsock_ring *r)
{
	uint32_t avail = r->peer - r->own;
	ssize_t st;
	int rc;

	if (r->broken)
		return r->broken;
	if (avail)
		return avail;
	rc = refresh_tail(r);
	if (rc < 0)
		return rc;
	avail = r->peer - r->own;
	if (avail)
		return avail;
	st = empty_status(r);
	if (st == 1)
		return (ssize_t)(uint32_t)(r->peer - r->own);
	return st;
}

ssize_t ivsock_ring_read(struct ivsock_ring *r, void *buf, size_t len)
{
	ssize_t avail = avail_or_status(r);

	if (avail <= 0)
		return avail;
	if (len == 0)
		return 0;
	if (len > (size_t)avail)
		len = (size_t)avail;
	copy_out(r, r->own, buf, len);
	r->own += (uint32_t)len;
	publish_head(r);
	return (ssize_t)len;
}

ssize_t ivsock_ring_readv(struct ivsock_ring *r, const struct iovec *iov, int iovcnt)
{
	ssize_t avail = avail_or_status(r);
	size_t done = 0, left;
	int i;

	if (avail <= 0)
		return avail;
	left = (size_t)avail;
	for (i = 0; i < iovcnt && left > 0; i++) {
		size_t n = iov[i].iov_len < left ? iov[i].iov_len : left;

		if (n == 0)
			continue;
		copy_out(r, r->own, iov[i].iov_base, n);
		r->own += (uint32_t)n;
		left -= n;
		done += n;
	}
	if (done)
		publish_head(r);
	return (ssize_t)done;
}

ssize_t ivsock_ring_peek(struct ivsock_ring *r, void *buf, size_t len, size_t offset)
{
	ssize_t avail;
	int rc;

	if (r->broken)
		return r->broken;
	rc = refresh_tail(r);
	if (rc < 0)
		return rc;
	avail = (ssize_t)(uint32_t)(r->peer - r->own);
	if (avail == 0) {
		avail = empty_status(r);
		if (avail == 1)
			avail = (ssize_t)(uint32_t)(r->peer - r->own);
		if (avail <= 0)
			return avail;
	}
	if (offset >= (size_t)avail)
		return -EAGAIN;
	avail -= (ssize_t)offset;
	if (len > (size_t)avail)
		len = (size_t)avail;
	copy_out(r, r->own + (uint32_t)offset, buf, len);
	return (ssize_t)len;
}

ssize_t ivsock_ring_consume(struct ivsock_ring *r, size_t len)
{
	ssize_t avail = avail_or_status(r);

	if (avail <= 0)
		return avail;
	if (len > (size_t)avail)
		len = (size_t)avail;
	r->own += (uint32_t)len;
	publish_head(r);
	return (ssize_t)len;
}

bool ivsock_ring_producer_needs_wake(struct ivsock_ring *r)
{
	uint32_t want, seen;

	/* Pairs with the fence in ivsock_ring_producer_prepare_sleep(). */
	ivsock_smp_mb();
	want = ivsock_load_relaxed(&r->p->prod_sleep); /* once; any value is fine */
	seen = r->my_seen;
	if (want == seen)
		return false;
	r->my_seen = want;
	ivsock_store_relaxed(&r->c->prod_sleep_seen, want);
	return true;
}

int ivsock_ring_consumer_prepare_sleep(struct ivsock_ring *r)
{
	uint32_t seq;
	long n;

	if (r->broken)
		return r->broken;
	seq = ++r->my_sleep;
	ivsock_store_relaxed(&r->c->cons_sleep, seq);
	/* Pairs with the fence in ivsock_ring_consumer_needs_wake(). */
	ivsock_smp_mb();
	n = ivsock_ring_readable(r);
	if (n < 0)
		return (int)n;
	if (n > 0)
		return 0;
	if (ivsock_ring_peer_flags(r) & IVSOCK_RING_EOF)
		return 0;
	return 1;
}

void ivsock_ring_close_read(struct ivsock_ring *r)
{
	uint32_t f = r->my_flags |= IVSOCK_RING_RCLOSED;

	ivsock_store_release(&r->c->cons_flags, f);
}

long ivsock_ring_snap_readable(const struct ivsock_ring *r)
{
	/* Pairs with the release store of tail in ivsock_ring_publish(). */
	uint32_t tail = ivsock_load_acquire(&r->p->tail);
	uint32_t n = tail - ivsock_load_relaxed(&r->published);

	return n > r->size ? -EPROTO : (long)n;
}

long ivsock_ring_snap_unconsumed(const struct ivsock_ring *r)
{
	/* Pairs with the release store of head in publish_head(). */
	uint32_t head = ivsock_load_acquire(&r->c->head);
	uint32_t n = ivsock_load_relaxed(&r->published) - head;

	return n > r->size ? -EPROTO : (long)n;
}

uint32_t ivsock_ring_cons_flags(const struct ivsock_ring *r)
{
	return ivsock_load_acquire(&r->c->cons_flags);
}
