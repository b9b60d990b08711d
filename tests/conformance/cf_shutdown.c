// SPDX-License-Identifier: MIT
// Half-close: the client sends a request and SHUT_WR; the server reads to
// EOF, replies, and closes; the client reads the reply to EOF. Writes after
// SHUT_WR fail with EPIPE; SO_ERROR stays 0; SHUT_RD and SHUT_RDWR results.
#include "conf.h"

#include <unistd.h>

int case_server(int lfd)
{
	int fd = conf_accept(lfd), err = -1;
	uint64_t in = 0, out = 0;
	socklen_t l = sizeof(err);
	char b[4096];
	ssize_t r;

	while ((r = read(fd, b, sizeof(b))) > 0)
		verify(SEED_C2S, &in, b, r);
	tr("read at EOF", r);
	tp("server got %llu request bytes", (unsigned long long)in);
	tr("read again at EOF", read(fd, b, sizeof(b)));
	send_stream(fd, SEED_S2C, &out, 200000, 7000);
	tr("getsockopt(SO_ERROR)", getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l));
	tp("SO_ERROR = %d", err);
	tr("shutdown(SHUT_WR)", shutdown(fd, SHUT_WR));
	tr("close", close(fd));
	return 0;
}

int case_client(void)
{
	int fd = conf_connect(), err = -1;
	uint64_t in = 0, out = 0;
	socklen_t l = sizeof(err);
	char b[4096];
	ssize_t r;

	send_stream(fd, SEED_C2S, &out, 100000, 3000);
	tr("shutdown(SHUT_WR)", shutdown(fd, SHUT_WR));
	tr("send after SHUT_WR (NOSIGNAL)", send(fd, b, 10, MSG_NOSIGNAL));
	while ((r = read(fd, b, sizeof(b))) > 0)
		verify(SEED_S2C, &in, b, r);
	tr("read at EOF", r);
	tp("client got %llu reply bytes", (unsigned long long)in);
	tr("getsockopt(SO_ERROR)", getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l));
	tp("SO_ERROR = %d", err);
	tr("shutdown(SHUT_RD)", shutdown(fd, SHUT_RD));
	tr("read after SHUT_RD", read(fd, b, sizeof(b)));
	tr("shutdown(SHUT_RDWR)", shutdown(fd, SHUT_RDWR));
	tr("shutdown(bad how)", shutdown(fd, 7));
	tr("close", close(fd));
	return 0;
}
