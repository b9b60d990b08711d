/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the libFuzzer harnesses: a cursor over the fuzz input
 * and a check that a harness run left no file descriptor open.
 */
#ifndef IVSOCK_FUZZ_H
#define IVSOCK_FUZZ_H

#include <dirent.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct fuzz_in {
	const uint8_t *p;
	size_t n;
};

/* Next byte, or 0 once the input is exhausted. */
static inline uint8_t fuzz_u8(struct fuzz_in *in)
{
	uint8_t v = 0;

	if (in->n) {
		v = *in->p++;
		in->n--;
	}
	return v;
}

static inline uint16_t fuzz_u16(struct fuzz_in *in)
{
	return (uint16_t)(fuzz_u8(in) | fuzz_u8(in) << 8);
}

static inline uint32_t fuzz_u32(struct fuzz_in *in)
{
	return (uint32_t)fuzz_u16(in) | (uint32_t)fuzz_u16(in) << 16;
}

/* Up to want bytes (fewer at the end of the input); *got says how many. */
static inline const uint8_t *fuzz_bytes(struct fuzz_in *in, size_t want, size_t *got)
{
	const uint8_t *p = in->p;

	if (want > in->n)
		want = in->n;
	in->p += want;
	in->n -= want;
	*got = want;
	return p;
}

/*
 * Number of open descriptors: a harness counts them before and after each
 * input; a difference is a descriptor the code under test leaked.
 */
static inline int fuzz_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		abort();
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static inline void fuzz_check_no_fd_leak(int before)
{
	int now = fuzz_open_fds();

	if (now != before) {
		fprintf(stderr, "fuzz: %d file descriptor(s) leaked\n", now - before);
		abort();
	}
}

/* Abort with a message: an invariant of the code under test is broken. */
#define FUZZ_ASSERT(cond)                                                         \
	do {                                                                      \
		if (!(cond)) {                                                    \
			fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n",     \
				__FILE__, __LINE__, #cond);                       \
			abort();                                                  \
		}                                                                 \
	} while (0)

#endif
