/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the protocol tests: a region on a memfd mapped
 * MAP_SHARED between PROT_NONE canary pages, a small PRNG, and a
 * position-addressable byte stream both ends of a ring can regenerate.
 */
#ifndef IVSOCK_TESTUTIL_H
#define IVSOCK_TESTUTIL_H

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#include "ivsock/layout.h"

struct test_region {
	uint8_t *map;       /* whole reservation, canaries included */
	size_t maplen;
	uint8_t *base;      /* the region proper */
	size_t size;
	int fd;             /* memfd backing the region */
	struct ivsock_region rg;
};

/* Small params so a test region is a few MiB: 4 VMs, 4 KiB rings. */
static inline void test_params_small(struct ivsock_region_params *p)
{
	ivsock_region_params_single(p, 4096);
	p->vm_cap = 4;
	p->listener_cap = 16;
	p->offer_cap = 64;
	p->channel_cap = 16;
}

/*
 * Map `size` bytes of a fresh memfd MAP_SHARED with one PROT_NONE page on
 * each side (an overrun faults even without ASan), and format it with p
 * (NULL: no format). @return 0 or -errno.
 */
static inline int test_region_map(struct test_region *t, size_t size,
				  const struct ivsock_region_params *p)
{
	long pg = sysconf(_SC_PAGESIZE);
	void *m;
	int rc;

	memset(t, 0, sizeof(*t));
	t->fd = memfd_create("ivsock-test", MFD_CLOEXEC);
	if (t->fd < 0)
		return -errno;
	if (ftruncate(t->fd, (off_t)size) < 0)
		goto err;
	t->maplen = size + 2 * (size_t)pg;
	t->map = mmap(NULL, t->maplen, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (t->map == MAP_FAILED)
		goto err;
	m = mmap(t->map + pg, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
		 t->fd, 0);
	if (m == MAP_FAILED)
		goto err_unmap;
	t->base = m;
	t->size = size;
	if (p) {
		rc = ivsock_region_format(&t->rg, t->base, size, p);
		if (rc < 0) {
			munmap(t->map, t->maplen);
			close(t->fd);
			return rc;
		}
	}
	return 0;
err_unmap:
	munmap(t->map, t->maplen);
err:
	rc = -errno;
	close(t->fd);
	return rc;
}

static inline void test_region_unmap(struct test_region *t)
{
	if (t->map)
		munmap(t->map, t->maplen);
	if (t->fd >= 0)
		close(t->fd);
	memset(t, 0, sizeof(*t));
	t->fd = -1;
}

static inline uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Uniform-ish in [lo, hi]. */
static inline uint64_t rnd_range(uint64_t *s, uint64_t lo, uint64_t hi)
{
	return lo + splitmix64(s) % (hi - lo + 1);
}

/* Byte `pos` of the test stream `seed` is byte (pos % 8) of word pos / 8. */
static inline uint64_t stream_word(uint64_t seed, uint64_t w)
{
	uint64_t s = seed ^ (w * 0xd1342543de82ef95ULL);

	return splitmix64(&s);
}

/* Fill buf with n stream bytes starting at stream position pos. */
static inline void stream_fill(uint8_t *buf, uint64_t seed, uint64_t pos, size_t n)
{
	while (n) {
		uint64_t w = stream_word(seed, pos / 8);
		unsigned int o = (unsigned int)(pos % 8);
		size_t k = 8 - o < n ? 8 - o : n;

		if (o == 0 && k == 8) {
			memcpy(buf, &w, 8);
		} else {
			uint8_t b[8];

			memcpy(b, &w, 8);
			memcpy(buf, b + o, k);
		}
		buf += k;
		pos += k;
		n -= k;
	}
}

/* Compare n received bytes with the stream at pos; returns the offset of the
 * first difference or -1 when equal. */
static inline long stream_check(const uint8_t *buf, uint64_t seed, uint64_t pos, size_t n)
{
	uint8_t tmp[4096];
	size_t done = 0;

	while (done < n) {
		size_t k = n - done < sizeof(tmp) ? n - done : sizeof(tmp);
		size_t i;

		stream_fill(tmp, seed, pos + done, k);
		if (memcmp(tmp, buf + done, k) != 0) {
			for (i = 0; i < k; i++)
				if (tmp[i] != buf[done + i])
					return (long)(done + i);
		}
		done += k;
	}
	return -1;
}

/* Open file descriptors of this process (for leak checks). */
static inline int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the DIR's own fd */
}

#endif
