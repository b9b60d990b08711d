// SPDX-License-Identifier: MIT
// Server speaks first: the server writes a banner right after accept, before
// reading anything (SMTP/SSH style); the client reads it, then sends a
// request; the server answers and closes.
#include "conf.h"

#include <string.h>
#include <unistd.h>

int case_server(int lfd)
{
	int fd = conf_accept(lfd);
	uint64_t in = 0, out = 0;

	send_stream(fd, SEED_S2C, &out, 300, 300);       /* banner */
	recv_stream(fd, SEED_C2S, &in, 5000, 5000);      /* request */
	send_stream(fd, SEED_S2C, &out, 70000, 7000);    /* answer */
	tp("server: banner, request ok, answer sent");
	tr("close", close(fd));
	return 0;
}

int case_client(void)
{
	int fd = conf_connect();
	uint64_t in = 0, out = 0;
	char b[512];
	ssize_t r;

	recv_stream(fd, SEED_S2C, &in, 300, 300);
	tp("client: banner ok");
	send_stream(fd, SEED_C2S, &out, 5000, 1000);
	while ((r = read(fd, b, sizeof(b))) > 0)
		verify(SEED_S2C, &in, b, r);
	tr("read at EOF", r);
	tp("client: answer of %llu bytes ok", (unsigned long long)(in - 300));
	close(fd);
	return 0;
}
