// SPDX-License-Identifier: MIT
/*
 * Unit tests of the SPSC byte ring (protocol/src/ring.c) in one process: the
 * index arithmetic, wrap-around, vectored and peeking reads, end-of-stream
 * flags, take-back, batched publication, re-attach and the sleep/wake rule.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "ivsock/ring.h"
#include "testutil.h"

#define RSIZE 4096U
#define SEED 0x5eedULL

struct fix {
	void *mem;
	struct ivsock_ring p, c;
	uint64_t wpos, rpos; /* stream positions written / read */
};

static int setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->mem = aligned_alloc(64, IVSOCK_RING_FOOTPRINT(RSIZE));
	assert_non_null(f->mem);
	memset(f->mem, 0xa5, IVSOCK_RING_FOOTPRINT(RSIZE));
	assert_int_equal(ivsock_ring_format_flat(f->mem, RSIZE), 0);
	assert_int_equal(ivsock_ring_attach_flat(&f->p, f->mem, RSIZE, IVSOCK_RING_PRODUCER), 0);
	assert_int_equal(ivsock_ring_attach_flat(&f->c, f->mem, RSIZE, IVSOCK_RING_CONSUMER), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;

	free(f->mem);
	free(f);
	return 0;
}

/* Write n stream bytes (all must fit). */
static void put(struct fix *f, size_t n, bool more)
{
	uint8_t *b = malloc(n ? n : 1);

	stream_fill(b, SEED, f->wpos, n);
	assert_int_equal(ivsock_ring_write(&f->p, b, n, more), n);
	f->wpos += n;
	free(b);
}

/* Read exactly n bytes and check them against the stream. */
static void get(struct fix *f, size_t n)
{
	uint8_t *b = malloc(n ? n : 1);

	assert_int_equal(ivsock_ring_read(&f->c, b, n), n);
	assert_int_equal(stream_check(b, SEED, f->rpos, n), -1);
	f->rpos += n;
	free(b);
}

static void test_size_valid(void **state)
{
	(void)state;
	assert_false(ivsock_ring_size_valid(0));
	assert_false(ivsock_ring_size_valid(32));
	assert_false(ivsock_ring_size_valid(100));
	assert_true(ivsock_ring_size_valid(64));
	assert_true(ivsock_ring_size_valid(1U << 30));
	assert_false(ivsock_ring_size_valid(1UL << 31));
	assert_int_equal(ivsock_ring_format_flat(NULL, 4096), -EINVAL);
}

static void test_attach_args(void **state)
{
	struct fix *f = *state;
	struct ivsock_ring r;

	assert_int_equal(ivsock_ring_attach_flat(&r, f->mem, 1000, IVSOCK_RING_PRODUCER), -EINVAL);
	assert_int_equal(ivsock_ring_attach_flat(&r, f->mem, RSIZE, 7), -EINVAL);
	assert_int_equal(ivsock_ring_attach_flat(&r, NULL, RSIZE, IVSOCK_RING_PRODUCER), -EINVAL);
}

static void test_empty(void **state)
{
	struct fix *f = *state;
	uint8_t b[16];

	assert_int_equal(ivsock_ring_readable(&f->c), 0);
	assert_int_equal(ivsock_ring_writable(&f->p), RSIZE);
	assert_int_equal(ivsock_ring_read(&f->c, b, sizeof(b)), -EAGAIN);
	assert_int_equal(ivsock_ring_peek(&f->c, b, sizeof(b), 0), -EAGAIN);
	assert_int_equal(ivsock_ring_consume(&f->c, 4), -EAGAIN);
	assert_int_equal(ivsock_ring_unconsumed(&f->p), 0);
	assert_int_equal(ivsock_ring_write(&f->p, b, 0, false), 0);
}

static void test_full(void **state)
{
	struct fix *f = *state;
	uint8_t b[64];

	put(f, RSIZE - 10, false);
	/* Only 10 bytes fit: a short count, then 0. */
	assert_int_equal(ivsock_ring_write(&f->p, b, sizeof(b), false), 10);
	f->wpos += 10; /* b is not stream data: skip it on read */
	assert_int_equal(ivsock_ring_write(&f->p, b, sizeof(b), false), 0);
	assert_int_equal(ivsock_ring_writable(&f->p), 0);
	assert_int_equal(ivsock_ring_readable(&f->c), RSIZE);
	assert_int_equal(ivsock_ring_unconsumed(&f->p), RSIZE);
	get(f, RSIZE - 10);
	assert_int_equal(ivsock_ring_consume(&f->c, 100), 10);
	f->rpos += 10;
	assert_int_equal(ivsock_ring_writable(&f->p), RSIZE);
}

static void test_wrap(void **state)
{
	struct fix *f = *state;
	int i;

	/* Many odd-sized rounds so every offset of the buffer gets a wrap. */
	for (i = 0; i < 200; i++) {
		size_t n = 1 + (size_t)(i * 977) % (RSIZE - 1);

		put(f, n, false);
		get(f, n);
	}
	put(f, 3000, false);
	get(f, 3000);
	put(f, 3000, false); /* crosses the end of the buffer */
	get(f, 1000);
	get(f, 2000);
}

static void test_partial_reads(void **state)
{
	struct fix *f = *state;
	uint8_t b[8];

	put(f, 100, false);
	get(f, 30);
	get(f, 30);
	assert_int_equal(ivsock_ring_readable(&f->c), 40);
	get(f, 40);
	assert_int_equal(ivsock_ring_read(&f->c, b, sizeof(b)), -EAGAIN);
	/* A read larger than what is there returns what is there. */
	put(f, 5, false);
	{
		uint8_t big[64];

		assert_int_equal(ivsock_ring_read(&f->c, big, sizeof(big)), 5);
		assert_int_equal(stream_check(big, SEED, f->rpos, 5), -1);
		f->rpos += 5;
	}
}

static void test_readv_writev(void **state)
{
	struct fix *f = *state;
	uint8_t src[5000], dst[5000];
	struct iovec wv[4], rv[5];
	int round;

	for (round = 0; round < 20; round++) {
		size_t sizes[4] = { 1, 700, 0, 1300 + (size_t)round * 37 };
		size_t total = 0, off = 0, k;

		for (k = 0; k < 4; k++)
			total += sizes[k];
		stream_fill(src, SEED, f->wpos, total);
		for (k = 0; k < 4; k++) {
			wv[k].iov_base = src + off;
			wv[k].iov_len = sizes[k];
			off += sizes[k];
		}
		assert_int_equal(ivsock_ring_writev(&f->p, wv, 4, false), total);
		f->wpos += total;
		/* read back with a different split, last iovec too big */
		rv[0] = (struct iovec){ dst, 3 };
		rv[1] = (struct iovec){ dst + 3, 0 };
		rv[2] = (struct iovec){ dst + 3, 1000 };
		rv[3] = (struct iovec){ dst + 1003, 17 };
		rv[4] = (struct iovec){ dst + 1020, sizeof(dst) - 1020 };
		assert_int_equal(ivsock_ring_readv(&f->c, rv, 5), total);
		assert_int_equal(stream_check(dst, SEED, f->rpos, total), -1);
		f->rpos += total;
	}
	/* writev larger than the space: truncated at the space */
	{
		static uint8_t big[RSIZE + 100];
		struct iovec v[2] = { { big, RSIZE / 2 }, { big, RSIZE } };

		assert_int_equal(ivsock_ring_writev(&f->p, v, 2, false), RSIZE);
		assert_int_equal(ivsock_ring_writev(&f->p, v, 2, false), 0);
		assert_int_equal(ivsock_ring_consume(&f->c, RSIZE), RSIZE);
	}
}

static void test_peek_consume(void **state)
{
	struct fix *f = *state;
	uint8_t b[64];

	put(f, RSIZE - 20, false);
	get(f, RSIZE - 20);
	put(f, 50, false); /* starts 20 bytes before the end: peeks wrap */
	assert_int_equal(ivsock_ring_peek(&f->c, b, 10, 0), 10);
	assert_int_equal(stream_check(b, SEED, f->rpos, 10), -1);
	assert_int_equal(ivsock_ring_peek(&f->c, b, 30, 15), 30);
	assert_int_equal(stream_check(b, SEED, f->rpos + 15, 30), -1);
	assert_int_equal(ivsock_ring_peek(&f->c, b, 64, 40), 10);
	assert_int_equal(stream_check(b, SEED, f->rpos + 40, 10), -1);
	assert_int_equal(ivsock_ring_peek(&f->c, b, 10, 50), -EAGAIN);
	/* peeking consumed nothing */
	assert_int_equal(ivsock_ring_readable(&f->c), 50);
	assert_int_equal(ivsock_ring_consume(&f->c, 25), 25);
	f->rpos += 25;
	assert_int_equal(ivsock_ring_peek(&f->c, b, 5, 0), 5);
	assert_int_equal(stream_check(b, SEED, f->rpos, 5), -1);
	assert_int_equal(ivsock_ring_consume(&f->c, 1000), 25);
	f->rpos += 25;
	assert_int_equal(ivsock_ring_consume(&f->c, 1), -EAGAIN);
}

static void test_eof(void **state)
{
	struct fix *f = *state;
	uint8_t b[16];

	put(f, 10, false);
	ivsock_ring_close_write(&f->p, false);
	assert_int_equal(ivsock_ring_peer_flags(&f->c), IVSOCK_RING_EOF);
	/* data before EOF is still delivered, then 0 forever */
	get(f, 10);
	assert_int_equal(ivsock_ring_read(&f->c, b, sizeof(b)), 0);
	assert_int_equal(ivsock_ring_read(&f->c, b, sizeof(b)), 0);
	assert_int_equal(ivsock_ring_peek(&f->c, b, sizeof(b), 0), 0);
	assert_int_equal(ivsock_ring_consumer_prepare_sleep(&f->c), 0);
}

static void test_eof_publishes_batched(void **state)
{
	struct fix *f = *state;

	put(f, 33, true); /* not published yet */
	assert_int_equal(ivsock_ring_readable(&f->c), 0);
	ivsock_ring_close_write(&f->p, false); /* publishes, then EOF */
	get(f, 33);
	assert_int_equal(ivsock_ring_read(&f->c, (uint8_t[4]){ 0 }, 4), 0);
}

static void test_reset(void **state)
{
	struct fix *f = *state;
	uint8_t b[16];

	put(f, 7, false);
	ivsock_ring_close_write(&f->p, true);
	assert_int_equal(ivsock_ring_peer_flags(&f->c), IVSOCK_RING_EOF | IVSOCK_RING_RESET);
	get(f, 7);
	assert_int_equal(ivsock_ring_read(&f->c, b, sizeof(b)), -ECONNRESET);
	assert_int_equal(ivsock_ring_readv(&f->c, &(struct iovec){ b, 4 }, 1), -ECONNRESET);
	assert_int_equal(ivsock_ring_peek(&f->c, b, 4, 0), -ECONNRESET);
	assert_int_equal(ivsock_ring_consume(&f->c, 4), -ECONNRESET);
}

/* A hostile peer sets RESET without EOF: the stream ends all the same
 * (the shim's poll reports it readable, so recv must not say EAGAIN). */
static void test_reset_alone(void **state)
{
	struct fix *f = *state;
	uint8_t b[16];

	put(f, 3, false);
	__atomic_store_n(&f->c.p->prod_flags, IVSOCK_RING_RESET, __ATOMIC_RELEASE);
	get(f, 3);
	assert_int_equal(ivsock_ring_read(&f->c, b, sizeof(b)), -ECONNRESET);
	assert_int_equal(ivsock_ring_peek(&f->c, b, 4, 0), -ECONNRESET);
}

static void test_rclosed(void **state)
{
	struct fix *f = *state;
	uint8_t b[16] = { 0 };
	struct iovec v = { b, sizeof(b) };

	put(f, 16, false);
	ivsock_ring_close_read(&f->c);
	assert_int_equal(ivsock_ring_write(&f->p, b, sizeof(b), false), -EPIPE);
	assert_int_equal(ivsock_ring_writev(&f->p, &v, 1, false), -EPIPE);
	assert_int_equal(ivsock_ring_producer_prepare_sleep(&f->p), -EPIPE);
}

static void test_take_back(void **state)
{
	struct fix *f = *state;
	uint8_t b[RSIZE];
	struct ivsock_ring c2;

	/* nothing consumed: everything comes back */
	put(f, 100, false);
	assert_int_equal(ivsock_ring_take_back(&f->p, b, 50), -ENOBUFS);
	assert_int_equal(ivsock_ring_take_back(&f->p, b, sizeof(b)), 100);
	assert_int_equal(stream_check(b, SEED, 0, 100), -1);
	assert_int_equal(ivsock_ring_unconsumed(&f->p), 0);
	assert_int_equal(ivsock_ring_take_back(&f->p, b, sizeof(b)), 0);
	/* a consumer attaching now sees an empty ring */
	assert_int_equal(ivsock_ring_attach_flat(&c2, f->mem, RSIZE, IVSOCK_RING_CONSUMER), 0);
	assert_int_equal(ivsock_ring_readable(&c2), 0);

	/* partly consumed, wrapped, with a batched (unpublished) tail */
	f->wpos = 0;
	f->rpos = 0;
	assert_int_equal(ivsock_ring_attach_flat(&f->c, f->mem, RSIZE, IVSOCK_RING_CONSUMER), 0);
	put(f, RSIZE - 30, false);
	get(f, RSIZE - 30);
	put(f, 100, false);
	put(f, 60, true);
	get(f, 40);
	assert_int_equal(ivsock_ring_unconsumed(&f->p), 120);
	assert_int_equal(ivsock_ring_take_back(&f->p, b, sizeof(b)), 120);
	assert_int_equal(stream_check(b, SEED, f->rpos, 120), -1);
	assert_int_equal(ivsock_ring_writable(&f->p), RSIZE);
}

static void test_batched_publish(void **state)
{
	struct fix *f = *state;
	int i;

	for (i = 0; i < 10; i++)
		put(f, 100, true);
	assert_int_equal(ivsock_ring_readable(&f->c), 0);
	assert_int_equal(ivsock_ring_unconsumed(&f->p), 1000);
	ivsock_ring_publish(&f->p);
	ivsock_ring_publish(&f->p); /* idempotent */
	assert_int_equal(ivsock_ring_readable(&f->c), 1000);
	get(f, 1000);
	/* a final write without more publishes the earlier batched ones too */
	put(f, 10, true);
	put(f, 10, false);
	get(f, 20);
	/* writev with more */
	{
		uint8_t b[30];
		struct iovec v = { b, sizeof(b) };

		stream_fill(b, SEED, f->wpos, sizeof(b));
		assert_int_equal(ivsock_ring_writev(&f->p, &v, 1, true), 30);
		f->wpos += 30;
		assert_int_equal(ivsock_ring_readable(&f->c), 0);
		ivsock_ring_publish(&f->p);
		get(f, 30);
	}
}

static void test_reattach(void **state)
{
	struct fix *f = *state;
	struct ivsock_ring p2, c2;

	put(f, 3000, false);
	get(f, 1000);
	put(f, 10, true); /* private to the old view: lost on re-attach */
	/* a new process attaches both views from the shared words only */
	assert_int_equal(ivsock_ring_attach_flat(&p2, f->mem, RSIZE, IVSOCK_RING_PRODUCER), 0);
	assert_int_equal(ivsock_ring_attach_flat(&c2, f->mem, RSIZE, IVSOCK_RING_CONSUMER), 0);
	f->p = p2;
	f->c = c2;
	f->wpos -= 10;
	assert_int_equal(ivsock_ring_readable(&f->c), 2000);
	assert_int_equal(ivsock_ring_writable(&f->p), RSIZE - 2000);
	get(f, 2000);
	put(f, RSIZE, false);
	get(f, RSIZE);
}

static void test_attach_corrupt(void **state)
{
	struct fix *f = *state;
	struct ivsock_ring_flat *h = f->mem;
	struct ivsock_ring r;

	ivsock_store_relaxed(&h->p.tail, RSIZE + 1);
	assert_int_equal(ivsock_ring_attach_flat(&r, f->mem, RSIZE, IVSOCK_RING_PRODUCER), -EPROTO);
	assert_int_equal(ivsock_ring_attach_flat(&r, f->mem, RSIZE, IVSOCK_RING_CONSUMER), -EPROTO);
	ivsock_store_relaxed(&h->p.tail, 5);
	ivsock_store_relaxed(&h->c.head, 6); /* head past tail */
	assert_int_equal(ivsock_ring_attach_flat(&r, f->mem, RSIZE, IVSOCK_RING_CONSUMER), -EPROTO);
	/* free-running indices across the 2^32 wrap are fine */
	ivsock_store_relaxed(&h->c.head, 0xfffffff0U);
	ivsock_store_relaxed(&h->p.tail, 0x10U);
	assert_int_equal(ivsock_ring_attach_flat(&r, f->mem, RSIZE, IVSOCK_RING_CONSUMER), 0);
	assert_int_equal(ivsock_ring_readable(&r), 0x20);
}

static void test_index_wrap_2_32(void **state)
{
	struct fix *f = *state;
	struct ivsock_ring_flat *h = f->mem;
	int i;

	ivsock_store_relaxed(&h->c.head, 0xffffff00U);
	ivsock_store_relaxed(&h->p.tail, 0xffffff00U);
	assert_int_equal(ivsock_ring_attach_flat(&f->p, f->mem, RSIZE, IVSOCK_RING_PRODUCER), 0);
	assert_int_equal(ivsock_ring_attach_flat(&f->c, f->mem, RSIZE, IVSOCK_RING_CONSUMER), 0);
	for (i = 0; i < 10; i++) {
		put(f, 1500, false);
		get(f, 1500);
	}
	assert_true(ivsock_load_relaxed(&h->p.tail) < 0x10000U);
}

static void test_corrupt_head(void **state)
{
	struct fix *f = *state;
	struct ivsock_ring_flat *h = f->mem;
	uint8_t b[8] = { 0 };

	put(f, 100, false);
	/* consumer claims to have consumed more than was ever published */
	ivsock_store_relaxed(&h->c.head, 101);
	assert_int_equal(ivsock_ring_writable(&f->p), -EPROTO);
	/* sticky even after the word is repaired */
	ivsock_store_relaxed(&h->c.head, 0);
	assert_int_equal(ivsock_ring_write(&f->p, b, sizeof(b), false), -EPROTO);
	assert_int_equal(ivsock_ring_unconsumed(&f->p), -EPROTO);
	assert_int_equal(ivsock_ring_producer_prepare_sleep(&f->p), -EPROTO);
	assert_int_equal(ivsock_ring_take_back(&f->p, b, sizeof(b)), -EPROTO);
}

static void test_corrupt_tail(void **state)
{
	struct fix *f = *state;
	struct ivsock_ring_flat *h = f->mem;
	uint8_t b[8];

	ivsock_store_relaxed(&h->p.tail, RSIZE + 1);
	assert_int_equal(ivsock_ring_read(&f->c, b, sizeof(b)), -EPROTO);
	ivsock_store_relaxed(&h->p.tail, 0);
	assert_int_equal(ivsock_ring_readable(&f->c), -EPROTO);
	assert_int_equal(ivsock_ring_peek(&f->c, b, 1, 0), -EPROTO);
	assert_int_equal(ivsock_ring_consumer_prepare_sleep(&f->c), -EPROTO);
}

/* ---- sleep/wake rule ---- */

static void test_consumer_sleep_wake(void **state)
{
	struct fix *f = *state;

	/* consumer finds nothing and prepares to sleep */
	assert_int_equal(ivsock_ring_consumer_prepare_sleep(&f->c), 1);
	/* producer publishes: the doorbell is needed exactly once */
	put(f, 10, false);
	assert_true(ivsock_ring_consumer_needs_wake(&f->p));
	put(f, 10, false);
	assert_false(ivsock_ring_consumer_needs_wake(&f->p));
	assert_false(ivsock_ring_consumer_needs_wake(&f->p));
	/* data present: preparing again says "do not sleep" */
	assert_int_equal(ivsock_ring_consumer_prepare_sleep(&f->c), 0);
	get(f, 20);
	/* a second sleep is a new request: one more doorbell */
	assert_int_equal(ivsock_ring_consumer_prepare_sleep(&f->c), 1);
	assert_int_equal(ivsock_ring_consumer_prepare_sleep(&f->c), 1);
	put(f, 1, false);
	assert_true(ivsock_ring_consumer_needs_wake(&f->p));
	assert_false(ivsock_ring_consumer_needs_wake(&f->p));
	get(f, 1);
	/* nobody sleeping: no doorbell */
	put(f, 1, false);
	assert_false(ivsock_ring_consumer_needs_wake(&f->p));
	get(f, 1);
}

/*
 * Every API-level interleaving of "producer: write, check" with "consumer:
 * prepare (bump + re-check)": if the consumer decides to sleep, the
 * producer's check must say "ring".
 */
static void test_no_lost_wakeup_orders(void **state)
{
	struct fix *f = *state;
	int order;

	for (order = 0; order < 3; order++) {
		int sleep = -1;
		bool wake = false;

		switch (order) {
		case 0: /* write, check, prepare */
			put(f, 4, false);
			wake = ivsock_ring_consumer_needs_wake(&f->p);
			sleep = ivsock_ring_consumer_prepare_sleep(&f->c);
			break;
		case 1: /* write, prepare, check */
			put(f, 4, false);
			sleep = ivsock_ring_consumer_prepare_sleep(&f->c);
			wake = ivsock_ring_consumer_needs_wake(&f->p);
			break;
		case 2: /* prepare, write, check */
			sleep = ivsock_ring_consumer_prepare_sleep(&f->c);
			put(f, 4, false);
			wake = ivsock_ring_consumer_needs_wake(&f->p);
			break;
		}
		assert_true(sleep == 0 || sleep == 1);
		if (sleep == 1)
			assert_true(wake);
		if (order == 2)
			assert_int_equal(sleep, 1);
		else
			assert_int_equal(sleep, 0);
		get(f, 4);
		/* drain any pending request so the next order starts clean */
		(void)ivsock_ring_consumer_needs_wake(&f->p);
	}
}

static void test_producer_sleep_wake(void **state)
{
	struct fix *f = *state;

	put(f, RSIZE, false);
	assert_int_equal(ivsock_ring_producer_prepare_sleep(&f->p), 1);
	get(f, 100);
	assert_true(ivsock_ring_producer_needs_wake(&f->c));
	get(f, 100);
	assert_false(ivsock_ring_producer_needs_wake(&f->c));
	/* space present: do not sleep */
	assert_int_equal(ivsock_ring_producer_prepare_sleep(&f->p), 0);
	/* prepare_sleep publishes a batched tail before checking */
	put(f, 200, true);
	assert_int_equal(ivsock_ring_producer_prepare_sleep(&f->p), 1);
	assert_int_equal(ivsock_ring_readable(&f->c), RSIZE);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_size_valid),
		T(test_attach_args),
		T(test_empty),
		T(test_full),
		T(test_wrap),
		T(test_partial_reads),
		T(test_readv_writev),
		T(test_peek_consume),
		T(test_eof),
		T(test_eof_publishes_batched),
		T(test_reset),
		T(test_reset_alone),
		T(test_rclosed),
		T(test_take_back),
		T(test_batched_publish),
		T(test_reattach),
		T(test_attach_corrupt),
		T(test_index_wrap_2_32),
		T(test_corrupt_head),
		T(test_corrupt_tail),
		T(test_consumer_sleep_wake),
		T(test_no_lost_wakeup_orders),
		T(test_producer_sleep_wake),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
