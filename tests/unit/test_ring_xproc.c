// SPDX-License-Identifier: MIT
/*
 * Two processes stream a checksummed byte sequence through one channel ring
 * in a memfd region: random chunk sizes, random write/writev and read/readv,
 * and the real sleep/wake rule with eventfds as doorbells. A lost wake-up
 * shows up as a wait that never ends (reported after 20 s).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/wait.h>

#include "ivsock/channel.h"
#include "ivsock/doorbell.h"
#include "testutil.h"

#define SEED      0x1badcafe5eedULL
#define REGION    (8U << 20)
#define STAGE     (512U << 10)
#define WAIT_MS   20000

struct xp {
	struct test_region t;
	struct ivsock_chan_view conn, acc;
	uint32_t idx, gen;
	int efd_cons, efd_prod; /* doorbells: consumer waits, producer waits */
	uint64_t total;
	size_t max_chunk;
};

/*
 * 1 GiB per stream; ThreadSanitizer instruments every copy and runs ~50x
 * slower, so its build (tests/tsan/, ordering is what it checks there)
 * streams 64 MiB. IVSOCK_XPROC_BYTES overrides both.
 */
#if defined(__SANITIZE_THREAD__)
#define DEFAULT_BYTES (64ULL << 20)
#else
#define DEFAULT_BYTES (1ULL << 30)
#endif

static uint64_t env_bytes(void)
{
	const char *s = getenv("IVSOCK_XPROC_BYTES");

	return s ? strtoull(s, NULL, 0) : DEFAULT_BYTES;
}

/* Block on our doorbell. @return 0, or -ETIMEDOUT (a lost wake-up). */
static int wait_bell(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int rc;

	do
		rc = poll(&p, 1, WAIT_MS);
	while (rc < 0 && errno == EINTR);
	if (rc == 0)
		return -ETIMEDOUT;
	return ivsock_eventfd_drain(fd) < 0 ? -EIO : 0;
}

/* Child: consumer of the connector -> acceptor ring. Exit code = verdict. */
static int consumer(struct xp *x, uint64_t rs)
{
	struct ivsock_ring *r = &x->acc.rx;
	uint8_t *buf = malloc(x->max_chunk);
	uint64_t pos = 0, sleeps = 0, spins;
	unsigned long budget;

	if (!buf)
		return 10;
	for (;;) {
		size_t n = (size_t)rnd_range(&rs, 1, x->max_chunk);
		ssize_t got;

		if (rnd_range(&rs, 0, 3) == 0) {
			struct iovec v[3];
			size_t a = (size_t)rnd_range(&rs, 0, n), b = (size_t)rnd_range(&rs, 0, n - a);

			v[0] = (struct iovec){ buf, a };
			v[1] = (struct iovec){ buf + a, b };
			v[2] = (struct iovec){ buf + a + b, n - a - b };
			got = ivsock_ring_readv(r, v, 3);
		} else {
			got = ivsock_ring_read(r, buf, n);
		}
		if (got > 0) {
			long bad = stream_check(buf, SEED, pos, (size_t)got);

			if (bad >= 0) {
				fprintf(stderr, "consumer: byte %llu differs\n",
					(unsigned long long)(pos + (uint64_t)bad));
				return 11;
			}
			pos += (uint64_t)got;
			if (ivsock_ring_producer_needs_wake(r) &&
			    ivsock_eventfd_signal(x->efd_prod) < 0)
				return 12;
			/* now and then, be slow so the producer fills up */
			if (rnd_range(&rs, 0, 20000) == 0)
				usleep(200);
			continue;
		}
		if (got == 0)
			break; /* end of stream */
		if (got != -EAGAIN) {
			fprintf(stderr, "consumer: read %zd\n", got);
			return 13;
		}
		/* empty: spin a random budget (sometimes none), then sleep */
		budget = rnd_range(&rs, 0, 1) ? 0 : (unsigned long)rnd_range(&rs, 1, 2000);
		for (spins = 0; spins < budget && ivsock_ring_readable(r) == 0; spins++)
			ivsock_cpu_relax();
		if (spins < budget)
			continue;
		switch (ivsock_ring_consumer_prepare_sleep(r)) {
		case 1:
			sleeps++;
			if (wait_bell(x->efd_cons) < 0) {
				fprintf(stderr, "consumer: lost wake-up at %llu\n",
					(unsigned long long)pos);
				return 14;
			}
			break;
		case 0:
			break;
		default:
			return 15;
		}
	}
	if (pos != x->total) {
		fprintf(stderr, "consumer: EOF after %llu of %llu bytes\n",
			(unsigned long long)pos, (unsigned long long)x->total);
		return 16;
	}
	printf("consumer: %llu bytes verified, slept %llu times\n",
	       (unsigned long long)pos, (unsigned long long)sleeps);
	free(buf);
	return 0;
}

static int producer(struct xp *x, uint64_t rs)
{
	struct ivsock_ring *r = &x->conn.tx;
	uint8_t *stage = malloc(STAGE);
	uint64_t pos = 0, gpos = 0, glen = 0, sleeps = 0;

	if (!stage)
		return 20;
	while (pos < x->total) {
		size_t n = (size_t)rnd_range(&rs, 1, x->max_chunk);
		uint8_t *src;
		ssize_t put;

		if (n > x->total - pos)
			n = (size_t)(x->total - pos);
		if (pos + n > gpos + glen) {
			gpos = pos;
			glen = STAGE;
			stream_fill(stage, SEED, gpos, STAGE);
		}
		src = stage + (pos - gpos);
		if (rnd_range(&rs, 0, 3) == 0) {
			struct iovec v[3];
			size_t a = (size_t)rnd_range(&rs, 0, n), b = (size_t)rnd_range(&rs, 0, n - a);

			v[0] = (struct iovec){ src, a };
			v[1] = (struct iovec){ src + a, b };
			v[2] = (struct iovec){ src + a + b, n - a - b };
			put = ivsock_ring_writev(r, v, 3, false);
		} else {
			put = ivsock_ring_write(r, src, n, false);
		}
		if (put < 0) {
			fprintf(stderr, "producer: write %zd\n", put);
			return 21;
		}
		if (put > 0) {
			pos += (uint64_t)put;
			if (ivsock_ring_consumer_needs_wake(r) &&
			    ivsock_eventfd_signal(x->efd_cons) < 0)
				return 22;
			if (rnd_range(&rs, 0, 20000) == 0)
				usleep(200); /* let the consumer run dry and sleep */
			continue;
		}
		switch (ivsock_ring_producer_prepare_sleep(r)) {
		case 1:
			sleeps++;
			if (wait_bell(x->efd_prod) < 0) {
				fprintf(stderr, "producer: lost wake-up at %llu\n",
					(unsigned long long)pos);
				return 23;
			}
			break;
		case 0:
			break;
		default:
			return 24;
		}
	}
	ivsock_ring_close_write(r, false);
	if (ivsock_ring_consumer_needs_wake(r))
		ivsock_eventfd_signal(x->efd_cons);
	printf("producer: %llu bytes sent, slept %llu times\n",
	       (unsigned long long)pos, (unsigned long long)sleeps);
	free(stage);
	return 0;
}

static void run_stream(size_t max_chunk)
{
	struct ivsock_region_params p;
	struct ivsock_end_id me0 = { .vm = 0, .client = 1, .peer_id = 1, .vector = 1 };
	struct ivsock_end_id me1 = { .vm = 1, .client = 1, .peer_id = 2, .vector = 1 };
	struct ivsock_tuple tup;
	struct xp x;
	int status, prc;
	pid_t pid;

	memset(&x, 0, sizeof(x));
	memset(&tup, 0, sizeof(tup));
	x.total = env_bytes();
	x.max_chunk = max_chunk;
	ivsock_region_params_default(&p);
	p.vm_cap = 4;
	assert_int_equal(test_region_map(&x.t, REGION, &p), 0);
	assert_int_equal(x.t.rg.class[x.t.rg.default_class].ring_size, 128 * 1024);
	assert_int_equal(ivsock_chan_open(&x.t.rg, &me0, &tup, ivsock_chan_dst_vm(&x.t.rg, me0.vm, &tup), x.t.rg.default_class, &x.idx, &x.gen), 0);
	assert_int_equal(ivsock_chan_accept(&x.t.rg, x.idx, x.gen, 0, &me1, &x.acc), 0);
	assert_int_equal(ivsock_chan_view_connector(&x.t.rg, x.idx, x.gen, &x.conn), 0);
	x.efd_cons = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	x.efd_prod = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	assert_true(x.efd_cons >= 0 && x.efd_prod >= 0);

	fflush(stdout);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int rc = consumer(&x, 0x1234 ^ max_chunk);

		if (rc == 0)
			rc = ivsock_chan_close(&x.t.rg, x.idx, x.gen,
					       IVSOCK_SIDE_ACCEPTOR, false) < 0 ? 17 : 0;
		fflush(stdout);
		_exit(rc);
	}
	prc = producer(&x, 0x9876 ^ max_chunk);
	if (prc != 0)
		kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(prc, 0);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* the acceptor closed first: our close frees the channel and rings */
	assert_int_equal(ivsock_chan_close(&x.t.rg, x.idx, x.gen, IVSOCK_SIDE_CONNECTOR, false), 1);
	assert_int_equal(ivsock_block_pool_used(&x.t.rg, 0), 0);
	close(x.efd_cons);
	close(x.efd_prod);
	test_region_unmap(&x.t);
}

/* Small chunks: many wake-up decisions per ring's worth of data. */
static void test_stream_small_chunks(void **state)
{
	(void)state;
	run_stream(1500);
}

/* Chunks up to twice the ring: short writes, wrap on every pass. */
static void test_stream_large_chunks(void **state)
{
	(void)state;
	run_stream(256 * 1024);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stream_small_chunks),
		cmocka_unit_test(test_stream_large_chunks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
