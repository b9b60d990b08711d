// SPDX-License-Identifier: MIT
// dup, dup2, dup3, fcntl F_DUPFD/F_DUPFD_CLOEXEC/F_SETFL/F_GETFD on a
// connected socket: every descriptor reaches the same connection, O_NONBLOCK
// is shared, and EOF comes only after the last descriptor is closed.
#include "conf.h"

#include <fcntl.h>
#include <unistd.h>

int case_server(int lfd)
{
	int fd = conf_accept(lfd);
	uint64_t in = 0, out = 0;

	recv_stream(fd, SEED_C2S, &in, 5 * 10000, 4096);
	tp("server got the bytes written through 5 descriptors");
	send_stream(fd, SEED_S2C, &out, 4 * 3000, 3000);
	tok_recv(fd, 'z');                       /* written after some closes */
	tr("read at EOF (after the last close)", wait_eof(fd));
	close(fd);
	return 0;
}

int case_client(void)
{
	int fd = conf_connect(), d1, d2, d3, d4, fds[5];
	uint64_t out = 0, in = 0;
	char b[10];

	d1 = dup(fd);
	d2 = dup2(fd, 100);
	d3 = dup3(fd, 101, O_CLOEXEC);
	d4 = fcntl(fd, F_DUPFD, 200);
	tp("dup ok %d, dup2 = %d, dup3 = %d, F_DUPFD >= 200: %d", d1 > fd, d2, d3, d4 >= 200);
	tp("FD_CLOEXEC: fd %d dup2 %d dup3 %d", fcntl(fd, F_GETFD), fcntl(d2, F_GETFD), fcntl(d3, F_GETFD));
	int d5 = fcntl(fd, F_DUPFD_CLOEXEC, 300);
	tp("F_DUPFD_CLOEXEC >= 300: %d, FD_CLOEXEC %d", d5 >= 300, fcntl(d5, F_GETFD));
	tr("dup2 onto itself", dup2(d2, d2));
	tr("dup3 onto itself", dup3(d2, d2, 0));
	fds[0] = fd; fds[1] = d1; fds[2] = d2; fds[3] = d3; fds[4] = d4;
	for (int i = 0; i < 5; i++)
		send_stream(fds[i], SEED_C2S, &out, 10000, 1000);
	/* O_NONBLOCK set through one is seen through all. */
	tr("F_SETFL O_NONBLOCK on dup", fcntl(d1, F_SETFL, O_NONBLOCK));
	tp("O_NONBLOCK seen on fd %d, dup3 %d", !!(fcntl(fd, F_GETFL) & O_NONBLOCK),
	   !!(fcntl(d3, F_GETFL) & O_NONBLOCK));
	tr("F_SETFL 0 on dup2", fcntl(d2, F_SETFL, 0));
	tp("O_NONBLOCK seen on dup %d", !!(fcntl(d1, F_GETFL) & O_NONBLOCK));
	/* Read the reply through four different descriptors. */
	recv_stream(d4, SEED_S2C, &in, 3000, 3000);
	recv_stream(d3, SEED_S2C, &in, 3000, 3000);
	tr("close original", close(fd));
	tr("close dup", close(d1));
	recv_stream(d2, SEED_S2C, &in, 3000, 3000);
	recv_stream(d5, SEED_S2C, &in, 3000, 3000);
	tr("read through closed original", read(fd, b, 1));
	tr("write via dup2 after closes", write(d2, "z", 1));
	tr("close dup2", close(d2));
	tr("close dup3", close(d3));
	tr("close F_DUPFD", close(d4));
	tr("close F_DUPFD_CLOEXEC", close(d5));
	return 0;
}
