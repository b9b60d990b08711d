// SPDX-License-Identifier: MIT
// epoll: level-triggered, edge-triggered, EPOLLONESHOT and re-arm with
// EPOLL_CTL_MOD, one socket in two epoll sets, EPOLLOUT via MOD, EPOLLRDHUP,
// and a socket closed while registered (dup kept, then last close).
#include "conf.h"

#include <sys/epoll.h>
#include <unistd.h>

static void ew(const char *what, int ep, int tmo)
{
	struct epoll_event ev[4];
	int n = epoll_wait(ep, ev, 4, tmo);

	if (n < 0) {
		tr(what, n);
		return;
	}
	if (n == 0)
		tp("%s = 0", what);
	for (int i = 0; i < n; i++)
		tp("%s = %d [%d] data=%llu events %s", what, n, i, (unsigned long long)ev[i].data.u64,
		   epollname(ev[i].events));
}

static int add(int ep, int op, int fd, unsigned events, uint64_t data)
{
	struct epoll_event e = { .events = events, .data.u64 = data };

	return epoll_ctl(ep, op, fd, &e);
}

int case_server(int lfd)
{
	int ep1 = epoll_create1(EPOLL_CLOEXEC), ep2 = epoll_create1(0), ep3 = epoll_create(4);
	int fd, d;
	uint64_t in = 0;
	char b[16];

	CHECK(ep1 >= 0 && ep2 >= 0 && ep3 >= 0);
	tr("add listen to ep1", add(ep1, EPOLL_CTL_ADD, lfd, EPOLLIN, 1));
	ew("ep1 wait (pending connection)", ep1, -1);
	fd = conf_accept(lfd);
	tr("del listen from ep1", epoll_ctl(ep1, EPOLL_CTL_DEL, lfd, NULL));
	tr("add conn to ep1 (LT IN)", add(ep1, EPOLL_CTL_ADD, fd, EPOLLIN, 10));
	tr("add conn again to ep1", add(ep1, EPOLL_CTL_ADD, fd, EPOLLIN, 10));
	ew("ep1 LT idle 0ms", ep1, 0);
	tok_send(fd, 'a');                                   /* client sends 10 */
	ew("ep1 LT data", ep1, -1);
	recv_stream(fd, SEED_C2S, &in, 5, 5);
	ew("ep1 LT half read", ep1, 0);
	/* The same socket in a second set, edge-triggered. */
	tr("add conn to ep2 (ET IN)", add(ep2, EPOLL_CTL_ADD, fd, EPOLLIN | EPOLLET, 20));
	ew("ep2 ET first", ep2, 0);
	ew("ep2 ET again, no new data", ep2, 0);
	ew("ep1 LT still ready", ep1, 0);
	recv_stream(fd, SEED_C2S, &in, 5, 5);
	ew("ep1 LT drained", ep1, 0);
	tok_send(fd, 'b');                                   /* client sends 10 more */
	ew("ep2 ET new data", ep2, -1);
	ew("ep2 ET after report", ep2, 0);
	/* ONESHOT in a third set, re-armed with MOD. */
	tr("add conn to ep3 (IN|ONESHOT)", add(ep3, EPOLL_CTL_ADD, fd, EPOLLIN | EPOLLONESHOT, 30));
	ew("ep3 oneshot first", ep3, 0);
	ew("ep3 oneshot disarmed", ep3, 0);
	tr("mod conn in ep3 (IN|ONESHOT)", add(ep3, EPOLL_CTL_MOD, fd, EPOLLIN | EPOLLONESHOT, 31));
	ew("ep3 oneshot re-armed", ep3, 0);
	recv_stream(fd, SEED_C2S, &in, 10, 10);
	tr("mod conn in ep3 (OUT)", add(ep3, EPOLL_CTL_MOD, fd, EPOLLOUT, 32));
	ew("ep3 OUT", ep3, 0);
	tr("mod conn in ep1 (IN|RDHUP)", add(ep1, EPOLL_CTL_MOD, fd, EPOLLIN | EPOLLRDHUP, 11));
	ew("ep1 idle", ep1, 0);
	tok_send(fd, 'c');                                   /* client: SHUT_WR */
	ew("ep1 after peer SHUT_WR", ep1, -1);
	tr("read at EOF", read(fd, b, sizeof(b)));
	/* Closed while registered: a dup keeps the registration alive. */
	d = dup(fd);
	CHECK(d >= 0);
	tr("close original fd", close(fd));
	ew("ep1 after closing original (dup open)", ep1, 0);
	tr("epoll_ctl DEL closed fd", epoll_ctl(ep1, EPOLL_CTL_DEL, fd, NULL));
	tr("close last dup", close(d));
	ew("ep1 after last close", ep1, 0);
	ew("ep2 after last close", ep2, 0);
	tr("epoll_ctl ADD closed fd", add(ep1, EPOLL_CTL_ADD, fd, EPOLLIN, 0));
	close(ep1);
	close(ep2);
	close(ep3);
	return 0;
}

int case_client(void)
{
	int fd = conf_connect();
	uint64_t out = 0;

	tok_recv(fd, 'a');
	send_stream(fd, SEED_C2S, &out, 10, 10);
	tok_recv(fd, 'b');
	send_stream(fd, SEED_C2S, &out, 10, 10);
	tok_recv(fd, 'c');
	tr("shutdown(SHUT_WR)", shutdown(fd, SHUT_WR));
	tr("read until server closes", wait_eof(fd));
	close(fd);
	return 0;
}
