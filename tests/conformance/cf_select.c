// SPDX-License-Identifier: MIT
// select and pselect: listening socket readable, timeout on an idle socket
// (and the timeout left), writable, readable on data and at EOF, pselect with
// a signal mask.
#include "conf.h"

#include <signal.h>
#include <sys/select.h>
#include <unistd.h>

static void pr(const char *what, int r, int fd, fd_set *rd, fd_set *wr)
{
	if (r < 0)
		tr(what, r);
	else
		tp("%s = %d rd=%d wr=%d", what, r, rd ? FD_ISSET(fd, rd) : -1, wr ? FD_ISSET(fd, wr) : -1);
}

int case_server(int lfd)
{
	fd_set rd, wr;
	struct timeval tv;
	struct timespec ts = { 0, 20 * 1000 * 1000 };
	sigset_t m;
	uint64_t in = 0;
	char b[8];
	int fd;

	FD_ZERO(&rd);
	FD_SET(lfd, &rd);
	pr("select(listen rd)", select(lfd + 1, &rd, NULL, NULL, NULL), lfd, &rd, NULL);
	fd = conf_accept(lfd);
	FD_ZERO(&rd);
	FD_SET(fd, &rd);
	tv.tv_sec = 0;
	tv.tv_usec = 20000;
	pr("select(rd, 20ms) nothing", select(fd + 1, &rd, NULL, NULL, &tv), fd, &rd, NULL);
	tp("timeval left = %ld.%06ld", (long)tv.tv_sec, (long)tv.tv_usec);
	FD_ZERO(&rd);
	FD_SET(fd, &rd);
	FD_ZERO(&wr);
	FD_SET(fd, &wr);
	pr("select(rd+wr) idle", select(fd + 1, &rd, &wr, NULL, NULL), fd, &rd, &wr);
	FD_ZERO(&rd);
	FD_SET(fd, &rd);
	pr("pselect(rd, 20ms) nothing", pselect(fd + 1, &rd, NULL, NULL, &ts, NULL), fd, &rd, NULL);
	tok_send(fd, 'g');
	FD_ZERO(&rd);
	FD_SET(fd, &rd);
	sigemptyset(&m);
	sigaddset(&m, SIGUSR1);
	pr("pselect(rd, mask) data", pselect(fd + 1, &rd, NULL, NULL, NULL, &m), fd, &rd, NULL);
	recv_stream(fd, SEED_C2S, &in, 77, 77);
	tok_send(fd, 'h');
	FD_ZERO(&rd);
	FD_SET(fd, &rd);
	pr("select(rd) at EOF", select(fd + 1, &rd, NULL, NULL, NULL), fd, &rd, NULL);
	tr("read at EOF", read(fd, b, sizeof(b)));
	close(fd);
	return 0;
}

int case_client(void)
{
	int fd = conf_connect();
	uint64_t out = 0;
	fd_set rd;

	tok_recv(fd, 'g');
	send_stream(fd, SEED_C2S, &out, 77, 77);
	tok_recv(fd, 'h');
	tr("shutdown(SHUT_WR)", shutdown(fd, SHUT_WR));
	FD_ZERO(&rd);
	FD_SET(fd, &rd);
	pr("select(rd) until server closes", select(fd + 1, &rd, NULL, NULL, NULL), fd, &rd, NULL);
	tr("read at EOF", read(fd, &out, 1));
	close(fd);
	return 0;
}
