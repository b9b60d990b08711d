// SPDX-License-Identifier: MIT
// Non-blocking sockets: EAGAIN on an empty socket, write until EAGAIN against
// a peer that does not read, then drain with EAGAIN/poll loops; every byte
// verified. A second connection carries control messages.
#include "conf.h"

#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

static void set_nb(int fd)
{
	CHECK(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == 0);
}

static void wait_ev(int fd, short ev)
{
	struct pollfd p = { .fd = fd, .events = ev };

	while (poll(&p, 1, -1) < 0)
		CHECK(errno == EINTR);
}

int case_server(int lfd)
{
	int fd = conf_accept(lfd), ctl = conf_accept(lfd);
	uint64_t in = 0, total;
	char b[8192];
	ssize_t r;

	set_nb(fd);
	tr("read on empty nonblocking socket", read(fd, b, 1));
	tok_send(ctl, 'g');
	/* The client fills the path until EAGAIN, then tells us the total. */
	read_all(ctl, &total, sizeof(total));
	for (;;) {
		r = read(fd, b, sizeof(b));
		if (r < 0 && errno == EAGAIN) {
			wait_ev(fd, POLLIN);
			continue;
		}
		CHECK(r >= 0);
		if (r == 0)
			break;
		verify(SEED_C2S, &in, b, r);
	}
	tp("server got %s bytes, checksum ok, then EOF", in == total ? "all announced" : "WRONG COUNT");
	tr("read after EOF", read(fd, b, 1));
	close(fd);
	close(ctl);
	return 0;
}

int case_client(void)
{
	int fd = conf_connect(), ctl = conf_connect();
	uint64_t out = 0, total;
	char b[8192];
	ssize_t r;
	int eagain = 0;

	set_nb(fd);
	tp("O_NONBLOCK set: %d", !!(fcntl(fd, F_GETFL) & O_NONBLOCK));
	tok_recv(ctl, 'g');
	tr("read on empty nonblocking socket", read(fd, b, 1));
	/* Phase 1: the server is not reading: write until EAGAIN. */
	for (;;) {
		stream_fill(SEED_C2S, out, b, sizeof(b));
		r = write(fd, b, sizeof(b));
		if (r < 0) {
			CHECK(errno == EAGAIN);
			eagain = 1;
			break;
		}
		out += r;
	}
	tp("write reached EAGAIN: %d", eagain);
	/* Phase 2: announce a total, then finish the stream with poll/EAGAIN. */
	total = out + (4u << 20);
	write_all(ctl, &total, sizeof(total));
	while (out < total) {
		size_t k = total - out < sizeof(b) ? total - out : sizeof(b);

		stream_fill(SEED_C2S, out, b, k);
		r = write(fd, b, k);
		if (r < 0 && errno == EAGAIN) {
			wait_ev(fd, POLLOUT);
			continue;
		}
		CHECK(r > 0);
		out += r;
	}
	tp("client wrote the announced total");
	tr("shutdown(SHUT_WR)", shutdown(fd, SHUT_WR));
	wait_eof(ctl);
	return 0;
}
