// SPDX-License-Identifier: MIT
/*
 * Fuzzes the shim's side of the shim <-> agent protocol: ivsock_agent_call
 * (protocol/src/agent_client.c) reading the agent's replies from a
 * SOCK_SEQPACKET socketpair, each packet with 0..3 descriptors attached.
 * Whatever arrives, the reply is accepted only if well framed, and no
 * descriptor is leaked or handed out beyond max_fds.
 */
#include <errno.h>
#include <stdbool.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include "ivsock/agent_client.h"
#include "ivsock/msg.h"
#include "fuzz.h"

static bool send_packet(int s, const uint8_t *p, size_t len, int nfds)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(3 * sizeof(int))];
	} ctl;
	struct iovec iov = { (void *)p, len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	int fds[3], i;
	ssize_t n;

	for (i = 0; i < nfds; i++)
		fds[i] = eventfd(0, EFD_CLOEXEC);
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
	for (i = 0; i < nfds; i++)
		close(fds[i]);
	return n == (ssize_t)len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t reply[IVSOCK_MSG_MAX];
	struct fuzz_in in = { data, size };
	uint8_t mode = fuzz_u8(&in);
	struct ivsock_ag_hello hello = { 1, 0 };
	int sv[2], npackets = 0, i, fds_before = fuzz_open_fds();
	int max_fds = mode & 3;
	size_t cap = (mode & 4) ? sizeof(struct ivsock_msg_hdr) + 8 : sizeof(reply);

	FUZZ_ASSERT(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
	/* Replies queued in advance: [length (2 bytes, top bits: fds)][bytes]. */
	while (in.n) {
		uint16_t h = fuzz_u16(&in);
		size_t got;
		const uint8_t *p = fuzz_bytes(&in, h & 0x3fff, &got);

		if (!send_packet(sv[1], p, got, h >> 14))
			break;
		npackets++;
	}
	shutdown(sv[1], SHUT_WR);
	for (i = 0; i <= npackets; i++) {
		int fds[3] = { -1, -1, -1 }, nfds = -1;
		ssize_t n = ivsock_agent_call(sv[0], IVSOCK_AG_HELLO, 7, &hello, sizeof(hello),
					      IVSOCK_AG_HELLO_REPLY, reply, cap, fds,
					      max_fds, &nfds);
		uint8_t req[64];

		/* Take the request out, or the sender blocks once the queue is full. */
		FUZZ_ASSERT(recv(sv[1], req, sizeof(req), MSG_DONTWAIT) > 0 || n == -EINVAL);

		if (n < 0) {
			FUZZ_ASSERT(nfds == 0);
			if (n == -ECONNRESET && i == npackets)
				break;
			continue;
		}
		FUZZ_ASSERT((size_t)n >= sizeof(struct ivsock_msg_hdr) && (size_t)n <= cap);
		FUZZ_ASSERT(ivsock_msg_check(reply, (size_t)n, IVSOCK_AG_HELLO_REPLY, 0) == 0);
		FUZZ_ASSERT(nfds >= 0 && nfds <= max_fds);
		while (nfds > 0)
			close(fds[--nfds]);
	}
	close(sv[0]);
	close(sv[1]);
	fuzz_check_no_fd_leak(fds_before);
	return 0;
}
