// SPDX-License-Identifier: MIT
// recv flags: MSG_PEEK (short and long), MSG_DONTWAIT (data, then EAGAIN),
// MSG_WAITALL across several peer writes, MSG_PEEK|MSG_DONTWAIT on an empty
// socket, and MSG_NOSIGNAL on a healthy socket.
#include "conf.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

int case_server(int lfd)
{
	int fd = conf_accept(lfd);
	uint64_t out = 0, in = 0;
	char b[3000];
	struct timespec ts = { 0, 30 * 1000 * 1000 };

	send_stream(fd, SEED_S2C, &out, 10, 10);
	tok_recv(fd, 'a');
	for (int i = 0; i < 3; i++) { /* three writes the client gathers with WAITALL */
		send_stream(fd, SEED_S2C, &out, 1000, 1000);
		nanosleep(&ts, NULL);
	}
	tr("recv(3000, WAITALL)", recv(fd, b, 3000, MSG_WAITALL));
	verify(SEED_C2S, &in, b, 3000);
	tr("recv at EOF (WAITALL)", recv(fd, b, 10, MSG_WAITALL));
	close(fd);
	return 0;
}

int case_client(void)
{
	int fd = conf_connect();
	uint64_t in = 0, out = 0;
	char p[100], b[3000];

	tr("recv(4, PEEK)", recv(fd, p, 4, MSG_PEEK));
	/* All ten bytes came in one segment; wait for them with PEEK|WAITALL. */
	tr("recv(10, PEEK|WAITALL)", recv(fd, p, 10, MSG_PEEK | MSG_WAITALL));
	tr("recv(100, PEEK|DONTWAIT)", recv(fd, p, 100, MSG_PEEK | MSG_DONTWAIT));
	tr("recv(4)", recv(fd, b, 4, 0));
	tp("peeked bytes match: %d", !memcmp(p, b, 4));
	verify(SEED_S2C, &in, b, 4);
	tr("recv(100, DONTWAIT)", recv(fd, b, 100, MSG_DONTWAIT));
	verify(SEED_S2C, &in, b, 6);
	tr("recv(100, DONTWAIT) empty", recv(fd, b, 100, MSG_DONTWAIT));
	tr("recv(1, PEEK|DONTWAIT) empty", recv(fd, b, 1, MSG_PEEK | MSG_DONTWAIT));
	tok_send(fd, 'a');
	tr("recv(3000, WAITALL)", recv(fd, b, 3000, MSG_WAITALL));
	verify(SEED_S2C, &in, b, 3000);
	stream_fill(SEED_C2S, out, b, 3000);
	tr("send(1000, NOSIGNAL)", send(fd, b, 1000, MSG_NOSIGNAL));
	tr("send(2000, DONTWAIT)", send(fd, b + 1000, 2000, MSG_DONTWAIT));
	tr("shutdown(SHUT_WR)", shutdown(fd, SHUT_WR));
	tr("recv at EOF", recv(fd, b, 10, 0));
	close(fd);
	return 0;
}
