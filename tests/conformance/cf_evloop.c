// SPDX-License-Identifier: MIT
// An edge-triggered event loop as nginx-style servers run it: non-blocking
// sockets, EPOLLIN|EPOLLOUT|EPOLLET|EPOLLRDHUP registered once, every read and
// write drained to EAGAIN, 8 MiB each way at the same time, then half-close.
#include "conf.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <unistd.h>

#define N (8u << 20)

static int loop(int fd, uint32_t wseed, uint32_t rseed)
{
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event e = { .events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP };
	uint64_t out = 0, in = 0, wakeups = 0;
	int eof = 0, shut = 0, rdhup = 0;
	char b[32768];

	CHECK(ep >= 0);
	CHECK(fcntl(fd, F_SETFL, O_NONBLOCK) == 0);
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) == 0);
	while (!eof || !shut) {
		int n = epoll_wait(ep, &e, 1, -1);

		if (n < 0 && errno == EINTR)
			continue;
		CHECK(n == 1);
		wakeups++;
		if (e.events & EPOLLRDHUP)
			rdhup = 1;
		/* Edge-triggered: drain both directions to EAGAIN every time. */
		while (!eof) {
			ssize_t r = read(fd, b, sizeof(b));

			if (r < 0 && errno == EAGAIN)
				break;
			CHECK(r >= 0);
			if (r == 0) {
				eof = 1;
				break;
			}
			verify(rseed, &in, b, r);
		}
		while (out < N) {
			size_t k = N - out < 20011 ? N - out : 20011;
			ssize_t r;

			stream_fill(wseed, out, b, k);
			r = write(fd, b, k);
			if (r < 0 && errno == EAGAIN)
				break;
			CHECK(r > 0);
			out += r;
		}
		if (out == N && !shut) {
			CHECK(shutdown(fd, SHUT_WR) == 0);
			shut = 1;
		}
	}
	/* Whether RDHUP came with the last wake-up or EOF was read earlier
	 * depends on timing: not part of the transcript. */
	(void)rdhup;
	tp("event loop: sent %llu, received %llu verified, then EOF",
	   (unsigned long long)out, (unsigned long long)in);
	CHECK(in == N);
	close(ep);
	return close(fd);
}

int case_server(int lfd)
{
	return loop(conf_accept(lfd), SEED_S2C, SEED_C2S);
}

int case_client(void)
{
	return loop(conf_connect(), SEED_C2S, SEED_S2C);
}
