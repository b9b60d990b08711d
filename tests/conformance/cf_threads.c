// SPDX-License-Identifier: MIT
// Threads: on each end one thread writes 16 MiB while another reads the
// peer's 16 MiB from the same socket; then half-close and EOF.
#include "conf.h"

#include <pthread.h>
#include <unistd.h>

#define N (16u << 20)

struct arg { int fd; uint32_t seed; };

static void *writer(void *p)
{
	struct arg *a = p;
	uint64_t out = 0;

	send_stream(a->fd, a->seed, &out, N, 24577);
	CHECK(shutdown(a->fd, SHUT_WR) == 0);
	return NULL;
}

static void *reader(void *p)
{
	struct arg *a = p;
	uint64_t in = 0;

	recv_stream(a->fd, a->seed, &in, N, 32768);
	CHECK(wait_eof(a->fd) == 0);
	return NULL;
}

static int both(int fd, uint32_t wseed, uint32_t rseed)
{
	struct arg w = { fd, wseed }, r = { fd, rseed };
	pthread_t tw, trd;

	CHECK(pthread_create(&tw, NULL, writer, &w) == 0);
	CHECK(pthread_create(&trd, NULL, reader, &r) == 0);
	CHECK(pthread_join(tw, NULL) == 0);
	CHECK(pthread_join(trd, NULL) == 0);
	tp("writer sent %u, reader got %u verified bytes and EOF", N, N);
	return close(fd);
}

int case_server(int lfd)
{
	return both(conf_accept(lfd), SEED_S2C, SEED_C2S);
}

int case_client(void)
{
	return both(conf_connect(), SEED_C2S, SEED_S2C);
}
