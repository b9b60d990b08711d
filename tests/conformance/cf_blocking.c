// SPDX-License-Identifier: MIT
// Blocking read/write, send/recv and sendto/recvfrom on a connected socket:
// 1 MiB each way, verified, then EOF after the client closes.
#include "conf.h"

#include <unistd.h>

#define N (1u << 20)

int case_server(int lfd)
{
	int fd = conf_accept(lfd);
	uint64_t in = 0, out = 0;
	char b[100];

	recv_stream(fd, SEED_C2S, &in, N, 65536);
	tp("server read %llu bytes ok", (unsigned long long)in);
	send_stream(fd, SEED_S2C, &out, N, 16384);
	tr("recvfrom(100, WAITALL)", recvfrom(fd, b, sizeof(b), MSG_WAITALL, NULL, NULL));
	verify(SEED_C2S, &in, b, sizeof(b));
	tr("sendto(100)", sendto(fd, b, sizeof(b), 0, NULL, 0));
	tr("read at EOF", read(fd, b, sizeof(b)));
	tr("read again at EOF", read(fd, b, sizeof(b)));
	tr("close", close(fd));
	return 0;
}

int case_client(void)
{
	int fd = conf_connect();
	uint64_t in = 0, out = 0;
	char b[100];

	send_stream(fd, SEED_C2S, &out, N, 65536);
	recv_stream(fd, SEED_S2C, &in, N, 4096);
	tp("client read %llu bytes ok", (unsigned long long)in);
	stream_fill(SEED_C2S, out, b, sizeof(b));
	tr("send(100)", send(fd, b, sizeof(b), 0));
	tr("recv(100, WAITALL)", recv(fd, b, sizeof(b), MSG_WAITALL));
	tp("echo %s", stream_check(SEED_C2S, out, b, sizeof(b)) < 0 ? "ok" : "BAD");
	tr("close", close(fd));
	return 0;
}
