// SPDX-License-Identifier: MIT
/*
 * ring_bench: throughput of one ivsock ring between a producer and a
 * consumer process (memfd region, CPUs 0 and 1) next to a bare two-thread
 * memcpy SPSC ring of the same size, measured in the same run; median of N
 * runs per message size.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <poll.h>

#include "ivsock/doorbell.h"
#include "ivsock/layout.h"
#include "ivsock/ring.h"

#define REGION_SIZE (16U << 20)
#define SPIN_BUDGET 200000 /* relax loops before the sleep/wake rule */

static int spin_only; /* --spin-only: skip the sleep/wake rule (its cost) */

static const size_t sizes[] = { 64, 256, 1024, 4096, 16384, 65536 };
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void pin(int cpu)
{
	cpu_set_t s;
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	CPU_ZERO(&s);
	CPU_SET(n > 1 ? cpu % n : 0, &s);
	sched_setaffinity(0, sizeof(s), &s); /* best effort */
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---------------- ivsock ring, two processes ---------------- */

struct shared_ctl {
	_Atomic int ready;
	_Atomic int go;
	double t_end;
	int status;
};

static int wait_bell(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	if (poll(&p, 1, 10000) <= 0)
		return -ETIMEDOUT;
	return ivsock_eventfd_drain(fd) < 0 ? -EIO : 0;
}

static int ivs_consume(struct ivsock_ring *r, size_t msg, uint64_t total, int efd_c,
		       int efd_p)
{
	uint8_t *buf = malloc(msg);
	uint64_t got = 0;
	unsigned long spins = 0;

	while (got < total) {
		ssize_t n = ivsock_ring_read(r, buf, msg);

		if (n > 0) {
			got += (uint64_t)n;
			spins = 0;
			if (!spin_only && ivsock_ring_producer_needs_wake(r))
				ivsock_eventfd_signal(efd_p);
			continue;
		}
		if (n != -EAGAIN)
			return -1;
		if (spin_only || ++spins < SPIN_BUDGET) {
			ivsock_cpu_relax();
			continue;
		}
		spins = 0;
		if (ivsock_ring_consumer_prepare_sleep(r) == 1 && wait_bell(efd_c) < 0)
			return -1;
	}
	free(buf);
	return 0;
}

static int ivs_produce(struct ivsock_ring *r, size_t msg, uint64_t total, int efd_c,
		       int efd_p)
{
	uint8_t *buf = malloc(msg);
	uint64_t sent = 0;
	unsigned long spins = 0;

	memset(buf, 0x6b, msg);
	while (sent < total) {
		size_t want = total - sent < msg ? (size_t)(total - sent) : msg;
		ssize_t n = ivsock_ring_write(r, buf, want, false);

		if (n > 0) {
			sent += (uint64_t)n;
			spins = 0;
			if (!spin_only && ivsock_ring_consumer_needs_wake(r))
				ivsock_eventfd_signal(efd_c);
			continue;
		}
		if (n < 0)
			return -1;
		if (spin_only || ++spins < SPIN_BUDGET) {
			ivsock_cpu_relax();
			continue;
		}
		spins = 0;
		if (ivsock_ring_producer_prepare_sleep(r) == 1 && wait_bell(efd_p) < 0)
			return -1;
	}
	free(buf);
	return 0;
}

/* One transfer of `total` bytes in `msg`-byte writes. @return GB/s or < 0. */
static double run_ivsock(size_t msg, uint64_t total)
{
	struct ivsock_region_params dp;
	struct ivsock_ring p, c;
	struct shared_ctl *ctl;
	uint32_t ring_size;
	int fd, efd_c, efd_p, status;
	void *base;
	double t0 = 0, gbps = -1;
	pid_t pid;

	fd = memfd_create("ring_bench", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, REGION_SIZE) < 0)
		return -1;
	base = mmap(NULL, REGION_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ctl = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED || ctl == MAP_FAILED)
		return -1;
	memset(ctl, 0, sizeof(*ctl));
	/* One flat ring (producer words, consumer words, data: the v3 byte
	 * layout) of the region's default ring size, in shared memory. */
	ivsock_region_params_default(&dp);
	ring_size = dp.class_size[dp.default_class];
	if (IVSOCK_RING_FOOTPRINT(ring_size) > REGION_SIZE ||
	    ivsock_ring_format_flat(base, ring_size) < 0)
		return -1;
	efd_c = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	efd_p = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);

	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		/* the consumer attaches its own view, as another process does */
		pin(1);
		if (ivsock_ring_attach_flat(&c, base, ring_size, IVSOCK_RING_CONSUMER) < 0)
			_exit(2);
		atomic_store(&ctl->ready, 1);
		while (!atomic_load(&ctl->go))
			ivsock_cpu_relax();
		ctl->status = ivs_consume(&c, msg, total, efd_c, efd_p);
		ctl->t_end = now();
		_exit(ctl->status ? 3 : 0);
	}
	pin(0);
	if (ivsock_ring_attach_flat(&p, base, ring_size, IVSOCK_RING_PRODUCER) < 0)
		goto out;
	while (!atomic_load(&ctl->ready))
		ivsock_cpu_relax();
	t0 = now();
	atomic_store(&ctl->go, 1);
	if (ivs_produce(&p, msg, total, efd_c, efd_p) < 0)
		fprintf(stderr, "ring_bench: producer failed\n");
out:
	if (waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0)
		gbps = (double)total / (ctl->t_end - t0) / 1e9;
	close(efd_c);
	close(efd_p);
	munmap(ctl, 4096);
	munmap(base, REGION_SIZE);
	close(fd);
	return gbps;
}

/* ---------------- bare SPSC ring, two threads ---------------- */

/* The textbook ring: free-running indices on their own cache lines, each
 * side caching the other's index, release/acquire on publish/observe. */
struct bare {
	_Alignas(64) _Atomic uint32_t tail;
	_Alignas(64) _Atomic uint32_t head;
	_Alignas(64) uint8_t *data;
	uint32_t size, mask;
	size_t msg;
	uint64_t total;
	_Atomic int go;
	double t_end;
};

static void *bare_consumer(void *arg)
{
	struct bare *b = arg;
	uint8_t *buf = malloc(b->msg);
	uint32_t head = 0, tail = 0;
	uint64_t got = 0;

	pin(1);
	while (!atomic_load(&b->go))
		ivsock_cpu_relax();
	while (got < b->total) {
		uint32_t avail = tail - head, n, off, first;

		if (avail == 0) {
			tail = atomic_load_explicit(&b->tail, memory_order_acquire);
			avail = tail - head;
			if (avail == 0) {
				ivsock_cpu_relax();
				continue;
			}
		}
		n = avail < b->msg ? avail : (uint32_t)b->msg;
		off = head & b->mask;
		first = b->size - off < n ? b->size - off : n;
		memcpy(buf, b->data + off, first);
		memcpy(buf + first, b->data, n - first);
		head += n;
		atomic_store_explicit(&b->head, head, memory_order_release);
		got += n;
	}
	b->t_end = now();
	free(buf);
	return NULL;
}

static double run_bare(size_t msg, uint64_t total, uint32_t size)
{
	struct bare *b = aligned_alloc(64, sizeof(*b));
	uint8_t *src = malloc(msg);
	uint32_t head = 0, tail = 0;
	uint64_t sent = 0;
	pthread_t th;
	double t0, gbps;

	memset(b, 0, sizeof(*b));
	memset(src, 0x6b, msg);
	b->data = aligned_alloc(64, size);
	memset(b->data, 0, size);
	b->size = size;
	b->mask = size - 1;
	b->msg = msg;
	b->total = total;
	pthread_create(&th, NULL, bare_consumer, b);
	pin(0);
	t0 = now();
	atomic_store(&b->go, 1);
	while (sent < total) {
		uint32_t space = size - (tail - head), n, off, first;
		size_t want = total - sent < msg ? (size_t)(total - sent) : msg;

		if (space == 0) {
			head = atomic_load_explicit(&b->head, memory_order_acquire);
			space = size - (tail - head);
			if (space == 0) {
				ivsock_cpu_relax();
				continue;
			}
		}
		n = space < want ? space : (uint32_t)want;
		off = tail & b->mask;
		first = size - off < n ? size - off : n;
		memcpy(b->data + off, src, first);
		memcpy(b->data, src + first, n - first);
		tail += n;
		atomic_store_explicit(&b->tail, tail, memory_order_release);
		sent += n;
	}
	pthread_join(th, NULL);
	gbps = (double)total / (b->t_end - t0) / 1e9;
	free(b->data);
	free(b);
	free(src);
	return gbps;
}

/* ---------------- main ---------------- */

static void machine(FILE *f)
{
	char line[256], model[200] = "unknown";
	FILE *ci = fopen("/proc/cpuinfo", "r");
	time_t t = time(NULL);
	char date[64];

	while (ci && fgets(line, sizeof(line), ci)) {
		char *c = strchr(line, ':');

		if (!strncmp(line, "model name", 10) && c) {
			snprintf(model, sizeof(model), "%s", c + 2);
			model[strcspn(model, "\n")] = '\0';
			break;
		}
	}
	if (ci)
		fclose(ci);
	strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S UTC", gmtime(&t));
	fprintf(f, "# date: %s\n# machine: nproc=%ld, cpu=%s\n", date,
		sysconf(_SC_NPROCESSORS_ONLN), model);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: ring_bench [--bytes N] [--runs N] [--csv FILE]\n"
		   "  --bytes N   bytes per transfer (default 1073741824; k/m/g suffixes)\n"
		   "  --runs N    runs per cell, median reported (default 5)\n"
		   "  --csv FILE  also write the table as CSV\n"
		   "  --spin-only never sleep and skip the wake-up checks (shows their cost)\n");
}

static uint64_t parse_size(const char *s)
{
	char *end;
	uint64_t v = strtoull(s, &end, 0);

	switch (*end) {
	case 'k': case 'K': v <<= 10; break;
	case 'm': case 'M': v <<= 20; break;
	case 'g': case 'G': v <<= 30; break;
	}
	return v;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "bytes", required_argument, NULL, 'b' },
		{ "runs", required_argument, NULL, 'r' },
		{ "csv", required_argument, NULL, 'c' },
		{ "spin-only", no_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t total = 1ULL << 30;
	int runs = 5, o, i, k;
	const char *csv_path = NULL;
	struct ivsock_region_params dp;
	FILE *csv = NULL;

	while ((o = getopt_long(argc, argv, "b:r:c:sh", opts, NULL)) != -1) {
		switch (o) {
		case 'b': total = parse_size(optarg); break;
		case 'r': runs = atoi(optarg); break;
		case 'c': csv_path = optarg; break;
		case 's': spin_only = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (runs < 1 || runs > 101 || total < 65536) {
		usage(stderr);
		return 2;
	}
	ivsock_region_params_default(&dp);
	if (csv_path && !(csv = fopen(csv_path, "w"))) {
		perror(csv_path);
		return 1;
	}
	machine(stdout);
	if (spin_only)
		printf("# --spin-only: no sleep/wake checks on the ivsock side\n");
	printf("# ring: %u bytes (region default) for both; %llu bytes per transfer; "
	       "median of %d runs\n", dp.class_size[dp.default_class], (unsigned long long)total, runs);
	printf("%8s %12s %14s %12s %7s\n", "size", "ivsock GB/s", "ivsock msgs/s",
	       "bare GB/s", "ratio");
	if (csv)
		fprintf(csv, "size,ivsock_gbps,ivsock_msgs_per_s,bare_gbps,ratio\n");
	for (i = 0; i < (int)NSIZES; i++) {
		double iv[101], bare[101], miv, mbare;

		/* interleave the two so drift hits both alike */
		for (k = 0; k < runs; k++) {
			iv[k] = run_ivsock(sizes[i], total);
			bare[k] = run_bare(sizes[i], total, dp.class_size[dp.default_class]);
			if (iv[k] < 0) {
				fprintf(stderr, "ring_bench: ivsock run failed\n");
				return 1;
			}
		}
		miv = median(iv, runs);
		mbare = median(bare, runs);
		printf("%8zu %12.2f %14.0f %12.2f %6.0f%%\n", sizes[i], miv,
		       miv * 1e9 / (double)sizes[i], mbare, 100 * miv / mbare);
		fflush(stdout);
		if (csv)
			fprintf(csv, "%zu,%.3f,%.0f,%.3f,%.3f\n", sizes[i], miv,
				miv * 1e9 / (double)sizes[i], mbare, miv / mbare);
	}
	if (csv)
		fclose(csv);
	return 0;
}
