// SPDX-License-Identifier: MIT
// Scatter/gather: writev, readv, sendmsg and recvmsg with odd iovec layouts;
// msg_flags and msg_namelen as TCP reports them; every byte verified.
#include "conf.h"

#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define ROUNDS 40

int case_server(int lfd)
{
	int fd = conf_accept(lfd);
	static char a[7], b[13], c[100003];
	struct iovec iov[3] = { { a, sizeof(a) }, { b, sizeof(b) }, { c, sizeof(c) } };
	uint64_t in = 0, want = (uint64_t)ROUNDS * (1 + 4095 + 60000) + ROUNDS * (3 + 5 + 7 + 40000);
	struct sockaddr_storage ss;
	struct msghdr mh;
	char r1[10], r2[90];

	while (in < want) {
		ssize_t r = readv(fd, iov, 3), k;
		size_t left;

		CHECK(r > 0);
		left = r;
		for (int i = 0; i < 3 && left; i++) {
			k = left < iov[i].iov_len ? left : iov[i].iov_len;
			verify(SEED_C2S, &in, iov[i].iov_base, k);
			left -= k;
		}
	}
	tp("server readv: %s", in == want ? "all bytes ok" : "TOO MANY BYTES");
	/* 100 bytes back, read by the client with recvmsg(WAITALL). */
	stream_fill(SEED_S2C, 0, c, 100);
	struct iovec o[2] = { { c, 30 }, { c + 30, 70 } };
	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = o;
	mh.msg_iovlen = 2;
	tr("sendmsg(30+70)", sendmsg(fd, &mh, 0));
	/* recvmsg with a name buffer: TCP reports no address. */
	memset(&mh, 0, sizeof(mh));
	struct iovec i2[2] = { { r1, sizeof(r1) }, { r2, sizeof(r2) } };
	mh.msg_iov = i2;
	mh.msg_iovlen = 2;
	mh.msg_name = &ss;
	mh.msg_namelen = sizeof(ss);
	tr("recvmsg(10+90, WAITALL)", recvmsg(fd, &mh, MSG_WAITALL));
	tp("msg_flags = %d msg_namelen = %u", mh.msg_flags, (unsigned)mh.msg_namelen);
	uint64_t o2 = 0;
	verify(SEED_S2C, &o2, r1, sizeof(r1));
	verify(SEED_S2C, &o2, r2, sizeof(r2));
	tr("readv at EOF", readv(fd, iov, 3));
	close(fd);
	return 0;
}

int case_client(void)
{
	int fd = conf_connect();
	static char big[60000 + 4095 + 1 + 40015];
	uint64_t out = 0, in = 0;
	struct msghdr mh;
	char r[100];

	for (int k = 0; k < ROUNDS; k++) {
		stream_fill(SEED_C2S, out, big, 1 + 4095 + 60000);
		struct iovec v[3] = { { big, 1 }, { big + 1, 4095 }, { big + 4096, 60000 } };
		ssize_t n = writev(fd, v, 3);

		if (n != 64096) { /* short writev is legal: finish it */
			CHECK(n > 0);
			write_all(fd, big + n, 64096 - n);
		}
		out += 64096;
		stream_fill(SEED_C2S, out, big, 3 + 5 + 7 + 40000);
		struct iovec w[5] = { { big, 3 }, { big + 3, 5 }, { NULL, 0 }, { big + 8, 7 }, { big + 15, 40000 } };
		memset(&mh, 0, sizeof(mh));
		mh.msg_iov = w;
		mh.msg_iovlen = 5;
		n = sendmsg(fd, &mh, 0);
		if (n != 40015) {
			CHECK(n > 0);
			write_all(fd, big + n, 40015 - n);
		}
		out += 40015;
	}
	tp("client wrote %d rounds", ROUNDS);
	struct iovec i1[2] = { { r, 1 }, { r + 1, 99 } };
	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = i1;
	mh.msg_iovlen = 2;
	tr("recvmsg(1+99, WAITALL)", recvmsg(fd, &mh, MSG_WAITALL));
	tp("msg_flags = %d", mh.msg_flags);
	verify(SEED_S2C, &in, r, 100);
	stream_fill(SEED_S2C, 0, r, 100);
	struct iovec o[3] = { { r, 50 }, { r + 50, 25 }, { r + 75, 25 } };
	tr("writev(50+25+25)", writev(fd, o, 3));
	tr("writev(zero iovecs)", writev(fd, o, 0));
	close(fd);
	return 0;
}
