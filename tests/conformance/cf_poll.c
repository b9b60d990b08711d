// SPDX-License-Identifier: MIT
// poll and ppoll: listening socket readable on a pending connection, timeout
// with nothing to read, POLLOUT, POLLIN on data, POLLRDHUP after the peer's
// SHUT_WR, ppoll with a signal mask, POLLNVAL on a closed fd.
#include "conf.h"

#include <poll.h>
#include <signal.h>
#include <unistd.h>

static void pr(const char *what, struct pollfd *p, int r)
{
	if (r < 0)
		tr(what, r);
	else
		tp("%s = %d revents %s", what, r, pollname(p->revents));
}

int case_server(int lfd)
{
	struct pollfd p = { .fd = lfd, .events = POLLIN };
	struct timespec ts = { 0, 20 * 1000 * 1000 };
	sigset_t m;
	uint64_t in = 0;
	char b[64];
	int fd;

	pr("poll(listen, POLLIN)", &p, poll(&p, 1, -1));
	fd = conf_accept(lfd);
	p.fd = fd;
	p.events = POLLIN;
	pr("poll(conn, POLLIN, 0ms) nothing", &p, poll(&p, 1, 0));
	pr("ppoll(conn, POLLIN, 20ms) nothing", &p, ppoll(&p, 1, &ts, NULL));
	p.events = POLLOUT;
	pr("poll(conn, POLLOUT)", &p, poll(&p, 1, -1));
	tok_send(fd, 'g');
	p.events = POLLIN;
	pr("poll(conn, POLLIN) data", &p, poll(&p, 1, -1));
	p.events = POLLIN | POLLOUT;
	pr("poll(conn, POLLIN|POLLOUT) data", &p, poll(&p, 1, 0));
	recv_stream(fd, SEED_C2S, &in, 33, 33);
	sigemptyset(&m);
	sigaddset(&m, SIGUSR1);
	p.events = POLLIN | POLLRDHUP;
	pr("ppoll(conn, POLLIN|POLLRDHUP, mask) nothing", &p, ppoll(&p, 1, &ts, &m));
	tok_send(fd, 'h');
	pr("ppoll(conn, POLLIN|POLLRDHUP, mask) after SHUT_WR", &p, ppoll(&p, 1, NULL, &m));
	tr("read at EOF", read(fd, b, sizeof(b)));
	p.events = POLLIN | POLLRDHUP | POLLOUT;
	pr("poll(conn, IN|RDHUP|OUT) after EOF", &p, poll(&p, 1, 0));
	close(fd);
	pr("poll(closed fd)", &p, poll(&p, 1, 0));
	return 0;
}

int case_client(void)
{
	int fd = conf_connect();
	struct pollfd p = { .fd = fd, .events = POLLIN };
	uint64_t out = 0;

	tok_recv(fd, 'g');
	send_stream(fd, SEED_C2S, &out, 33, 33);
	tok_recv(fd, 'h');
	tr("shutdown(SHUT_WR)", shutdown(fd, SHUT_WR));
	pr("poll(conn, POLLIN) until server closes", &p, poll(&p, 1, -1));
	tr("read at EOF", read(fd, &out, 1));
	close(fd);
	return 0;
}
