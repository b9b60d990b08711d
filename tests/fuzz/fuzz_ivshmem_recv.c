// SPDX-License-Identifier: MIT
/*
 * Fuzzes the receiving side of the ivshmem server protocol codec
 * (ivsock_ivshmem_recv, ivsock_ivshmem_client_greeting): the input is cut
 * into chunks sent through a socketpair, each with 0..7 descriptors attached,
 * so short reads, split messages and stray or extra fds are all exercised.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <sys/socket.h>

#include "ivsock/ivshmem_proto.h"
#include "fuzz.h"

/* Send one chunk with nfds (<= 7) duplicates of /dev/null attached.
 * @return false once the socket buffer is full (the rest is dropped). */
static bool send_chunk(int s, const uint8_t *p, size_t len, int nfds)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(7 * sizeof(int))];
	} ctl;
	struct iovec iov = { (void *)p, len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	int fds[7], i;
	ssize_t n;

	for (i = 0; i < nfds; i++) {
		fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
		FUZZ_ASSERT(fds[i] >= 0);
	}
	if (nfds) {
		struct cmsghdr *c;

		memset(&ctl, 0, sizeof(ctl));
		msg.msg_control = ctl.buf;
		msg.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
	}
	n = sendmsg(s, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
	FUZZ_ASSERT(n == (ssize_t)len || (n < 0 && errno == EAGAIN));
	for (i = 0; i < nfds; i++)
		close(fds[i]);
	return n > 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	uint8_t mode = fuzz_u8(&in);
	size_t rounds = 0;
	int sv[2], fds_before = fuzz_open_fds();

	FUZZ_ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	while (in.n) {
		uint8_t h = fuzz_u8(&in);
		size_t got;
		const uint8_t *p = fuzz_bytes(&in, (size_t)(h & 0x1f) + 1, &got);

		if (got && !send_chunk(sv[1], p, got, (h >> 5) & 7))
			break;
	}
	shutdown(sv[1], SHUT_WR);
	if (mode & 2)
		fcntl(sv[0], F_SETFL, O_NONBLOCK);

	if (mode & 1) {
		struct ivsock_ivshmem_greeting g;
		int rc = ivsock_ivshmem_client_greeting(sv[0], &g);

		if (rc == 0) {
			FUZZ_ASSERT(g.version == 0);
			FUZZ_ASSERT(g.own_id >= 0 && g.own_id <= IVSOCK_IVSHMEM_MAX_PEER);
			FUZZ_ASSERT(g.shm_fd >= 0);
			close(g.shm_fd);
		} else {
			FUZZ_ASSERT(g.shm_fd == -1);
		}
	}
	for (;;) {
		int64_t v;
		int fd = -2, rc = ivsock_ivshmem_recv(sv[0], &v, &fd);

		if (rc < 0) {
			FUZZ_ASSERT(fd == -1);
			break;
		}
		FUZZ_ASSERT(rc == 0);
		if (fd >= 0)
			close(fd);
		/* Each message consumes 8 bytes: never more rounds than that. */
		FUZZ_ASSERT(++rounds <= size / 8 + 1);
	}
	close(sv[0]);
	close(sv[1]);
	fuzz_check_no_fd_leak(fds_before);
	return 0;
}
