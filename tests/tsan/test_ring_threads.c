// SPDX-License-Identifier: MIT
/*
 * Two threads stream a checksummed byte sequence through one ring, with the
 * sleep/wake rule and eventfd doorbells. Built with -fsanitize=thread by
 * `make check-tsan`: ThreadSanitizer then checks that every data copy is
 * ordered by the ring's release/acquire pairs.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>

#include "ivsock/doorbell.h"
#include "ivsock/ring.h"
#include "../unit/testutil.h"

#define SEED 0xfeedf00dULL

struct tt {
	void *mem;
	uint32_t size;
	struct ivsock_ring p, c;
	int efd_cons, efd_prod;
	uint64_t total;
	size_t max_chunk;
	int prod_rc, cons_rc;
};

static int wait_bell(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int rc;

	do
		rc = poll(&p, 1, 20000);
	while (rc < 0 && errno == EINTR);
	if (rc == 0)
		return -ETIMEDOUT;
	return ivsock_eventfd_drain(fd) < 0 ? -EIO : 0;
}

static void *producer(void *arg)
{
	struct tt *t = arg;
	uint64_t rs = 77, pos = 0;
	uint8_t *buf = malloc(t->max_chunk);

	while (pos < t->total) {
		size_t n = (size_t)rnd_range(&rs, 1, t->max_chunk);
		ssize_t put;

		if (n > t->total - pos)
			n = (size_t)(t->total - pos);
		stream_fill(buf, SEED, pos, n);
		if (n > 2 && rnd_range(&rs, 0, 2) == 0) {
			struct iovec v[2] = { { buf, n / 3 }, { buf + n / 3, n - n / 3 } };

			put = ivsock_ring_writev(&t->p, v, 2, rnd_range(&rs, 0, 3) == 0);
		} else {
			put = ivsock_ring_write(&t->p, buf, n, rnd_range(&rs, 0, 3) == 0);
		}
		if (put < 0) {
			t->prod_rc = (int)put;
			break;
		}
		if (put > 0) {
			pos += (uint64_t)put;
			if (rnd_range(&rs, 0, 1))
				ivsock_ring_publish(&t->p);
			if (ivsock_ring_consumer_needs_wake(&t->p))
				ivsock_eventfd_signal(t->efd_cons);
			continue;
		}
		/* full (a batched tail is published by prepare_sleep) */
		switch (ivsock_ring_producer_prepare_sleep(&t->p)) {
		case 1:
			if (ivsock_ring_consumer_needs_wake(&t->p))
				ivsock_eventfd_signal(t->efd_cons);
			if (wait_bell(t->efd_prod) < 0) {
				t->prod_rc = -ETIMEDOUT;
				goto out;
			}
			break;
		case 0:
			if (ivsock_ring_consumer_needs_wake(&t->p))
				ivsock_eventfd_signal(t->efd_cons);
			break;
		default:
			t->prod_rc = -EPROTO;
			goto out;
		}
	}
out:
	ivsock_ring_close_write(&t->p, false);
	if (ivsock_ring_consumer_needs_wake(&t->p))
		ivsock_eventfd_signal(t->efd_cons);
	free(buf);
	return NULL;
}

static void *consumer(void *arg)
{
	struct tt *t = arg;
	uint64_t rs = 99, pos = 0;
	uint8_t *buf = malloc(t->max_chunk);

	for (;;) {
		size_t n = (size_t)rnd_range(&rs, 1, t->max_chunk);
		ssize_t got;

		if (rnd_range(&rs, 0, 4) == 0) {
			got = ivsock_ring_peek(&t->c, buf, n, 0);
			if (got > 0)
				got = ivsock_ring_consume(&t->c, (size_t)got);
		} else {
			got = ivsock_ring_read(&t->c, buf, n);
		}
		if (got > 0) {
			if (stream_check(buf, SEED, pos, (size_t)got) >= 0) {
				t->cons_rc = -EBADMSG;
				break;
			}
			pos += (uint64_t)got;
			if (ivsock_ring_producer_needs_wake(&t->c))
				ivsock_eventfd_signal(t->efd_prod);
			continue;
		}
		if (got == 0)
			break;
		if (got != -EAGAIN) {
			t->cons_rc = (int)got;
			break;
		}
		if (ivsock_ring_consumer_prepare_sleep(&t->c) == 1 &&
		    wait_bell(t->efd_cons) < 0) {
			t->cons_rc = -ETIMEDOUT;
			break;
		}
	}
	if (t->cons_rc == 0 && pos != t->total)
		t->cons_rc = -EPIPE;
	ivsock_ring_close_read(&t->c);
	if (ivsock_ring_producer_needs_wake(&t->c))
		ivsock_eventfd_signal(t->efd_prod);
	free(buf);
	return NULL;
}

static void run(uint32_t size, size_t max_chunk)
{
	const char *e = getenv("IVSOCK_THREADS_BYTES");
	pthread_t a, b;
	struct tt t;

	memset(&t, 0, sizeof(t));
	t.size = size;
	t.max_chunk = max_chunk;
	t.total = e ? strtoull(e, NULL, 0) : (64ULL << 20);
	t.mem = aligned_alloc(64, IVSOCK_RING_FOOTPRINT(size));
	assert_non_null(t.mem);
	assert_int_equal(ivsock_ring_format_flat(t.mem, size), 0);
	assert_int_equal(ivsock_ring_attach_flat(&t.p, t.mem, size, IVSOCK_RING_PRODUCER), 0);
	assert_int_equal(ivsock_ring_attach_flat(&t.c, t.mem, size, IVSOCK_RING_CONSUMER), 0);
	t.efd_cons = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	t.efd_prod = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	assert_true(t.efd_cons >= 0 && t.efd_prod >= 0);
	assert_int_equal(pthread_create(&a, NULL, producer, &t), 0);
	assert_int_equal(pthread_create(&b, NULL, consumer, &t), 0);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	assert_int_equal(t.prod_rc, 0);
	assert_int_equal(t.cons_rc, 0);
	close(t.efd_cons);
	close(t.efd_prod);
	free(t.mem);
}

static void test_small_ring(void **state)
{
	(void)state;
	run(4096, 1500);
}

static void test_default_ring(void **state)
{
	(void)state;
	run(128 * 1024, 64 * 1024);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_small_ring),
		cmocka_unit_test(test_default_ring),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
