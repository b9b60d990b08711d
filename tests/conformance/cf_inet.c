// SPDX-License-Identifier: MIT
// Addresses over IPv4 and IPv6 (the family follows the address given):
// getsockname/getpeername on both ends, accept4 with its peer address, and a
// verified exchange. Run by the suite on lab v4 and v6 addresses and on
// loopback (127.0.0.1, ::1).
#include "conf.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *fmt(struct sockaddr_storage *ss, socklen_t len, int with_port)
{
	static __thread char out[2][INET6_ADDRSTRLEN + 40];
	static __thread int k;
	char a[INET6_ADDRSTRLEN];
	char *o = out[k++ & 1];
	int port;

	if (ss->ss_family == AF_INET && len == sizeof(struct sockaddr_in)) {
		inet_ntop(AF_INET, &((struct sockaddr_in *)ss)->sin_addr, a, sizeof(a));
		port = ntohs(((struct sockaddr_in *)ss)->sin_port);
		snprintf(o, INET6_ADDRSTRLEN + 40, "AF_INET %s:%d", a, with_port ? port : -1);
	} else if (ss->ss_family == AF_INET6 && len == sizeof(struct sockaddr_in6)) {
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ss)->sin6_addr, a, sizeof(a));
		port = ntohs(((struct sockaddr_in6 *)ss)->sin6_port);
		snprintf(o, INET6_ADDRSTRLEN + 40, "AF_INET6 [%s]:%d", a, with_port ? port : -1);
	} else {
		snprintf(o, INET6_ADDRSTRLEN + 40, "family %d len %u", ss->ss_family, (unsigned)len);
	}
	return o;
}

static void names(int fd, int local_port, int peer_port)
{
	struct sockaddr_storage ss;
	socklen_t l = sizeof(ss);

	CHECK(getsockname(fd, (struct sockaddr *)&ss, &l) == 0);
	tp("getsockname = %s", fmt(&ss, l, local_port));
	if (peer_port < 0) {
		tr("getpeername on listener", getpeername(fd, (struct sockaddr *)&ss, &l));
		return;
	}
	l = sizeof(ss);
	CHECK(getpeername(fd, (struct sockaddr *)&ss, &l) == 0);
	tp("getpeername = %s", fmt(&ss, l, peer_port));
}

int case_server(int lfd)
{
	struct sockaddr_storage ss;
	socklen_t l = sizeof(ss);
	uint64_t in = 0, out = 0;
	int fd;

	names(lfd, 1, -1);
	do
		fd = accept4(lfd, (struct sockaddr *)&ss, &l, SOCK_CLOEXEC);
	while (fd < 0 && errno == EINTR);
	CHECK(fd >= 0);
	tp("accept4 peer = %s, FD_CLOEXEC %d", fmt(&ss, l, 0), fcntl(fd, F_GETFD));
	names(fd, 1, 0);
	recv_stream(fd, SEED_C2S, &in, 300000, 65536);
	send_stream(fd, SEED_S2C, &out, 300000, 65536);
	tr("read at EOF", wait_eof(fd));
	close(fd);
	return 0;
}

int case_client(void)
{
	int fd = conf_connect();
	uint64_t in = 0, out = 0;

	names(fd, 0, 1);
	send_stream(fd, SEED_C2S, &out, 300000, 65536);
	recv_stream(fd, SEED_S2C, &in, 300000, 65536);
	tp("exchange of 300000 bytes each way ok");
	close(fd);
	return 0;
}
