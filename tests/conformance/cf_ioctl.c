// SPDX-License-Identifier: MIT
// ioctl FIONREAD and FIONBIO, with fcntl F_GETFL agreeing; SIOCOUTQ-free.
#include "conf.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

int case_server(int lfd)
{
	int fd = conf_accept(lfd), n = -1;
	uint64_t out = 0;
	char b;

	tr("ioctl(FIONREAD) idle", ioctl(fd, FIONREAD, &n));
	tp("FIONREAD = %d", n);
	send_stream(fd, SEED_S2C, &out, 777, 777);
	tok_recv(fd, 'k');
	tr("read at EOF", read(fd, &b, 1));
	tr("ioctl(FIONREAD) at EOF", ioctl(fd, FIONREAD, &n));
	tp("FIONREAD = %d", n);
	close(fd);
	return 0;
}

int case_client(void)
{
	int fd = conf_connect(), n = -1, on = 1, off = 0;
	struct timespec ts = { 0, 2 * 1000 * 1000 };
	uint64_t in = 0;
	char b[1000];

	/* Wait (bounded) until all 777 bytes are there. */
	for (int i = 0; i < 5000; i++) {
		CHECK(ioctl(fd, FIONREAD, &n) == 0);
		if (n >= 777)
			break;
		nanosleep(&ts, NULL);
	}
	tp("FIONREAD = %d", n);
	recv_stream(fd, SEED_S2C, &in, 700, 700);
	tr("ioctl(FIONREAD)", ioctl(fd, FIONREAD, &n));
	tp("FIONREAD = %d", n);
	recv_stream(fd, SEED_S2C, &in, 77, 77);
	tr("ioctl(FIONBIO, 1)", ioctl(fd, FIONBIO, &on));
	tp("F_GETFL O_NONBLOCK = %d", !!(fcntl(fd, F_GETFL) & O_NONBLOCK));
	tr("read nonblocking empty", read(fd, b, sizeof(b)));
	tr("ioctl(FIONBIO, 0)", ioctl(fd, FIONBIO, &off));
	tp("F_GETFL O_NONBLOCK = %d", !!(fcntl(fd, F_GETFL) & O_NONBLOCK));
	tr("ioctl(FIONREAD) empty", ioctl(fd, FIONREAD, &n));
	tp("FIONREAD = %d", n);
	tok_send(fd, 'k');
	close(fd);
	return 0;
}
