// SPDX-License-Identifier: MIT
// Multiplexer cases the per-call programs do not cover: accelerated sockets
// and plain fds (a pipe, the listener) in one poll and one epoll set, every
// ready entry reported within n calls at maxevents=1, a cascaded epoll set
// (epoll in epoll, epoll in poll), two threads blocked in epoll_wait on one
// set, an edge-triggered EPOLLOUT after the peer drained a full socket, and
// EPOLLHUP once both directions are shut down.
#include "conf.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#define NC 3

static int add(int ep, int op, int fd, unsigned events, uint64_t data)
{
	struct epoll_event e = { .events = events, .data.u64 = data };

	return epoll_ctl(ep, op, fd, &e);
}

/* Block until fd is readable (plain poll, so the answer does not depend on
 * which call is under test). */
static void wait_in(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	CHECK(poll(&p, 1, -1) == 1);
}

struct waiter {
	int ep;
	uint64_t data;
	int n;
};

static void *waiter_fn(void *arg)
{
	struct waiter *w = arg;
	struct epoll_event ev;

	w->n = epoll_wait(w->ep, &ev, 1, -1);
	w->data = w->n == 1 ? ev.data.u64 : 999;
	return NULL;
}

int case_server(int lfd)
{
	int c[NC], pp[2], ep, in, out, ep3, ep4;
	struct epoll_event ev[8];
	struct pollfd p[6];
	char b[8];
	unsigned seen = 0;

	/* three connections, each names itself with one byte */
	for (int i = 0; i < NC; i++) {
		int fd = conf_accept(lfd);

		read_all(fd, b, 1);
		CHECK(b[0] >= '0' && b[0] < '0' + NC);
		c[b[0] - '0'] = fd;
	}
	CHECK(pipe2(pp, O_CLOEXEC) == 0);

	/* one set: three sockets, a pipe, the listener */
	ep = epoll_create1(EPOLL_CLOEXEC);
	CHECK(ep >= 0);
	for (int i = 0; i < NC; i++)
		tr("add conn", add(ep, EPOLL_CTL_ADD, c[i], EPOLLIN, (uint64_t)i));
	tr("add pipe", add(ep, EPOLL_CTL_ADD, pp[0], EPOLLIN, 100));
	tr("add listener", add(ep, EPOLL_CTL_ADD, lfd, EPOLLIN, 200));
	tr("epoll_wait idle 0ms", epoll_wait(ep, ev, 8, 0));
	tok_send(c[0], 'a'); /* the client writes one byte on each connection */
	for (int i = 0; i < NC; i++)
		wait_in(c[i]);
	write_all(pp[1], "p", 1);
	tr("epoll_wait all (max 8)", epoll_wait(ep, ev, 8, -1));
	for (int i = 0; i < NC + 1; i++) {
		CHECK(epoll_wait(ep, ev, 1, -1) == 1);
		seen |= 1U << (ev[0].data.u64 == 100 ? NC : (unsigned)ev[0].data.u64);
	}
	tp("maxevents=1: every ready entry within %d calls = %s", NC + 1,
	   seen == (1U << (NC + 1)) - 1 ? "yes" : "no");

	/* one poll set, mixed, order kept */
	p[0] = (struct pollfd){ .fd = c[0], .events = POLLIN };
	p[1] = (struct pollfd){ .fd = pp[0], .events = POLLIN };
	p[2] = (struct pollfd){ .fd = c[1], .events = POLLOUT };
	p[3] = (struct pollfd){ .fd = -1, .events = POLLIN };
	p[4] = (struct pollfd){ .fd = lfd, .events = POLLIN };
	p[5] = (struct pollfd){ .fd = pp[1], .events = POLLOUT };
	tr("poll mixed", poll(p, 6, 0));
	for (int i = 0; i < 6; i++)
		tp("  [%d] revents %s", i, pollname((unsigned)p[i].revents));
	for (int i = 0; i < NC; i++)
		read_all(c[i], b, 1);
	read_all(pp[0], b, 1);
	tr("poll mixed drained", poll(p, 6, 0));
	tr("epoll_wait drained", epoll_wait(ep, ev, 8, 0));

	/* cascade: c0 in `in`, `in` in `out`, `in` in a poll set */
	in = epoll_create1(EPOLL_CLOEXEC);
	out = epoll_create1(EPOLL_CLOEXEC);
	CHECK(in >= 0 && out >= 0);
	tr("add conn to inner", add(in, EPOLL_CTL_ADD, c[0], EPOLLIN, 7));
	tr("add inner to outer", add(out, EPOLL_CTL_ADD, in, EPOLLIN, 8));
	tr("add outer to inner (loop)", add(in, EPOLL_CTL_ADD, out, EPOLLIN, 9));
	tr("outer idle 0ms", epoll_wait(out, ev, 8, 0));
	tok_send(c[0], 'b'); /* the client writes 5 bytes on c0 */
	{
		int n = epoll_wait(out, ev, 8, -1);

		tr("outer wakes", n);
		for (int i = 0; i < n; i++)
			tp("  data=%llu events %s", (unsigned long long)ev[i].data.u64,
			   epollname(ev[i].events));
	}
	CHECK(epoll_wait(in, ev, 8, 0) == 1);
	tp("inner: data=%llu events %s", (unsigned long long)ev[0].data.u64,
	   epollname(ev[0].events));
	read_all(c[0], b, 5);
	p[0] = (struct pollfd){ .fd = in, .events = POLLIN };
	tr("poll(inner) drained", poll(p, 1, 0));
	tok_send(c[0], 'c'); /* 1 more byte on c0 */
	tr("poll(inner) wakes", poll(p, 1, -1));
	tp("  revents %s", pollname((unsigned)p[0].revents));
	read_all(c[0], b, 1);
	close(out);
	close(in);

	/* two threads blocked on one edge-triggered set */
	ep3 = epoll_create1(EPOLL_CLOEXEC);
	CHECK(ep3 >= 0);
	tr("add c1 ET", add(ep3, EPOLL_CTL_ADD, c[1], EPOLLIN | EPOLLET, 1));
	tr("add c2 ET", add(ep3, EPOLL_CTL_ADD, c[2], EPOLLIN | EPOLLET, 2));
	{
		struct waiter w[2] = { { .ep = ep3 }, { .ep = ep3 } };
		pthread_t t[2];

		pthread_create(&t[0], NULL, waiter_fn, &w[0]);
		pthread_create(&t[1], NULL, waiter_fn, &w[1]);
		tok_send(c[0], 'd'); /* one byte on c1, then one on c2 */
		pthread_join(t[0], NULL);
		pthread_join(t[1], NULL);
		tp("two waiters got %llu and %llu",
		   (unsigned long long)(w[0].data < w[1].data ? w[0].data : w[1].data),
		   (unsigned long long)(w[0].data < w[1].data ? w[1].data : w[0].data));
	}
	read_all(c[1], b, 1);
	read_all(c[2], b, 1);
	close(ep3);

	/* edge-triggered EPOLLOUT: fill c1, the peer drains it */
	{
		static char blk[65536];
		uint64_t total = 0, o = 0;
		int fl = fcntl(c[1], F_GETFL);
		ssize_t n;

		CHECK(fcntl(c[1], F_SETFL, fl | O_NONBLOCK) == 0);
		ep4 = epoll_create1(EPOLL_CLOEXEC);
		CHECK(ep4 >= 0);
		for (;;) {
			stream_fill(SEED_S2C, o, blk, sizeof(blk));
			n = write(c[1], blk, sizeof(blk));
			if (n < 0) {
				CHECK(errno == EAGAIN);
				break;
			}
			o += (uint64_t)n;
			total += (uint64_t)n;
		}
		tr("add c1 OUT|ET after EAGAIN", add(ep4, EPOLL_CTL_ADD, c[1], EPOLLOUT | EPOLLET, 4));
		write_all(c[2], &total, sizeof(total)); /* how much to drain (not printed) */
		{
			int k = epoll_wait(ep4, ev, 8, -1);

			tr("ET OUT after peer drained", k);
			if (k == 1)
				tp("  events %s", epollname(ev[0].events));
		}
		CHECK(fcntl(c[1], F_SETFL, fl) == 0);
		read_all(c[2], b, 1); /* the client has verified every byte */
		close(ep4);
	}

	/* both directions shut down: EPOLLHUP */
	tr("mod c2 IN|RDHUP", add(ep, EPOLL_CTL_MOD, c[2], EPOLLIN | EPOLLRDHUP, 22));
	tok_send(c[2], 'e'); /* the client shuts down writing */
	{
		int k = epoll_wait(ep, ev, 8, -1);

		tr("after peer SHUT_WR", k);
		for (int i = 0; i < k; i++)
			tp("  data=%llu events %s", (unsigned long long)ev[i].data.u64,
			   epollname(ev[i].events));
	}
	tr("shutdown(SHUT_WR)", shutdown(c[2], SHUT_WR));
	tr("mod c2 IN|OUT|RDHUP", add(ep, EPOLL_CTL_MOD, c[2], EPOLLIN | EPOLLOUT | EPOLLRDHUP, 23));
	{
		int k = epoll_wait(ep, ev, 8, 0);

		tr("both shut down", k);
		for (int i = 0; i < k; i++)
			tp("  data=%llu events %s", (unsigned long long)ev[i].data.u64,
			   epollname(ev[i].events));
	}
	for (int i = 0; i < NC; i++)
		close(c[i]);
	close(pp[0]);
	close(pp[1]);
	close(ep);
	return 0;
}

int case_client(void)
{
	int c[NC];
	uint64_t total = 0, off = 0;

	for (int i = 0; i < NC; i++) {
		c[i] = conf_connect();
		write_all(c[i], (char[1]){ (char)('0' + i) }, 1);
	}
	tok_recv(c[0], 'a');
	for (int i = 0; i < NC; i++)
		write_all(c[i], "x", 1);
	tok_recv(c[0], 'b');
	write_all(c[0], "yyyyy", 5);
	tok_recv(c[0], 'c');
	write_all(c[0], "z", 1);
	tok_recv(c[0], 'd');
	write_all(c[1], "1", 1);
	write_all(c[2], "2", 1);
	read_all(c[2], &total, sizeof(total));
	recv_stream(c[1], SEED_S2C, &off, total, 65536);
	write_all(c[2], "k", 1);
	tok_recv(c[2], 'e');
	tr("shutdown(SHUT_WR)", shutdown(c[2], SHUT_WR));
	tr("read until server closes", wait_eof(c[2]));
	/* Keep c0 and c1 open until the server closed them too: closing them
	 * earlier would race with the server's "both shut down" check. */
	for (int i = 0; i < NC - 1; i++)
		wait_eof(c[i]);
	for (int i = 0; i < NC; i++)
		close(c[i]);
	return 0;
}
