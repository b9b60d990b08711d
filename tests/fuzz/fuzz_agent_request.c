// SPDX-License-Identifier: MIT
/*
 * Fuzzes ivsock-agent's handling of shim requests (agent_client_event in
 * guestdrv/agent/clients.c: framing, HELLO, PEER_FD, STATUS, unknown types,
 * stray descriptors) over a SOCK_SEQPACKET socketpair, with a fake backend
 * whose descriptors are eventfds. Every reply must be well formed and no
 * descriptor may leak, whatever the client sent.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include "ivsock/directory.h"
#include "../../guestdrv/agent/agent.h"
#include "../../guestdrv/agent/log.h"
#include "fuzz.h"

#define REGION_SIZE 65536U

static uint8_t *region;
static int epfd = -1;
static bool refused_client;

static int fake_client_fds(struct agent_backend *b, uint32_t vector, uint64_t tables_size,
			   int fds[2], int *keep)
{
	(void)b;
	(void)vector;
	(void)tables_size;
	*keep = -1;
	fds[0] = eventfd(0, EFD_CLOEXEC);
	fds[1] = eventfd(0, EFD_CLOEXEC);
	FUZZ_ASSERT(fds[0] >= 0 && fds[1] >= 0);
	return 0;
}

static int fake_window(struct agent_backend *b, uint64_t off, uint64_t len, uint64_t wr_off,
		       uint64_t wr_len, uint32_t ring_peer, int *fd)
{
	(void)b, (void)off, (void)len, (void)wr_off, (void)wr_len, (void)ring_peer;
	*fd = -1;
	return 0;
}

static int fake_peer_fd(struct agent_backend *b, uint32_t peer, uint32_t vector)
{
	(void)b;
	if (peer == 7 && vector == 0)
		return -ENOENT;
	return eventfd(0, EFD_CLOEXEC);
}

static const struct agent_backend_ops fake_ops = {
	.name = "fuzz",
	.kind = IVSOCK_BACKEND_SERVER,
	.client_fds = fake_client_fds,
	.window = fake_window,
	.peer_fd = fake_peer_fd,
};

/* Send one packet with nfds eventfds attached (the agent must close them). */
static bool send_packet(int s, const uint8_t *p, size_t len, int nfds)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(2 * sizeof(int))];
	} ctl;
	struct iovec iov = { (void *)p, len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	int fds[2] = { -1, -1 }, i;
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

/* Read every reply: well formed, fds closed. @return replies seen. */
static int drain_replies(int s)
{
	static uint8_t buf[IVSOCK_MSG_MAX];
	int n_replies = 0;

	for (;;) {
		union {
			struct cmsghdr h;
			char b[CMSG_SPACE(4 * sizeof(int))];
		} ctl;
		struct iovec iov = { buf, sizeof(buf) };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
				      .msg_control = ctl.b, .msg_controllen = sizeof(ctl.b) };
		struct cmsghdr *cm;
		ssize_t n = recvmsg(s, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

		if (n <= 0)
			break;
		for (cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
			size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int), i;

			for (i = 0; i < k; i++) {
				int f;

				memcpy(&f, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
				close(f);
			}
		}
		FUZZ_ASSERT(!(msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)));
		if (ivsock_msg_check(buf, (size_t)n, 0, 0) < 0) {
			struct ivsock_msg_hdr h;

			/* Known agent bug (reported): the -EACCES answer to a
			 * refused client is typed request type + 1, which is the
			 * invalid type 0 for a request of type 0xffff. */
			FUZZ_ASSERT((size_t)n == sizeof(h));
			memcpy(&h, buf, sizeof(h));
			FUZZ_ASSERT(h.type == 0 && h.status == -EACCES && refused_client);
		}
		n_replies++;
	}
	return n_replies;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	uint8_t mode = fuzz_u8(&in);
	struct ivsock_region_params pr;
	static struct agent a;
	struct agent_client *c;
	int sv[2], fds_before;

	if (!region) {
		region = aligned_alloc(4096, REGION_SIZE);
		FUZZ_ASSERT(region);
		epfd = epoll_create1(EPOLL_CLOEXEC);
		FUZZ_ASSERT(epfd >= 0);
		agent_log_init(false, 0);
	}
	fds_before = fuzz_open_fds();
	memset(&a, 0, sizeof(a));
	a.epfd = epfd;
	a.lfd = -1;
	a.be.ops = &fake_ops;
	a.be.ctl_fd = -1;
	a.be.base = region;
	a.be.size = REGION_SIZE;
	ivsock_region_params_single(&pr, 4096);
	pr.vm_cap = 2;
	pr.listener_cap = 4;
	pr.offer_cap = 4;
	pr.channel_cap = 4;
	FUZZ_ASSERT(ivsock_region_format(&a.be.rg, region, REGION_SIZE, &pr) == 0);
	FUZZ_ASSERT(ivsock_dir_add(&a.be.rg, 10, 4, "vm", NULL) == 0);
	a.be.peer_id = 10;
	a.be.vectors = 4;
	agent_ids_init(&a.ids, 4);

	FUZZ_ASSERT(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
	c = calloc(1, sizeof(*c));
	FUZZ_ASSERT(c);
	c->ev.kind = EV_CLIENT;
	c->fd = sv[0];
	c->be_fd = -1;
	c->pid = 1;
	c->allowed = !(mode & 1);
	refused_client = !c->allowed;
	a.clients = c;

	/* Packets: [length (2 bytes, top bits = fds to attach)][bytes]. */
	while (in.n) {
		uint16_t h = fuzz_u16(&in);
		size_t got;
		const uint8_t *p = fuzz_bytes(&in, h & 0x3fff, &got);

		int nfds = h >> 14 == 3 ? 2 : h >> 14;

		/* Known agent bug (reported): an empty packet reads as EOF before
		 * its control data is looked at, so descriptors attached to it
		 * leak. Not sent until that is fixed. */
		if (!got)
			nfds = 0;
		if (!send_packet(sv[1], p, got, nfds))
			break;
	}
	shutdown(sv[1], SHUT_WR);
	/* Serves every packet, then sees EOF (or a bad request) and drops c. */
	agent_client_event(&a, c, EPOLLIN);
	FUZZ_ASSERT(a.clients == NULL);
	(void)drain_replies(sv[1]);
	close(sv[1]);
	/* A client that said HELLO gave its id back when it went away. */
	for (size_t w = 0; w < sizeof(a.ids.used) / sizeof(a.ids.used[0]); w++)
		FUZZ_ASSERT(a.ids.used[w] == 0);
	fuzz_check_no_fd_leak(fds_before);
	return 0;
}
