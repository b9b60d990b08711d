// SPDX-License-Identifier: MIT
/* ivshmem server protocol codec: int64 LE messages with optional SCM_RIGHTS
 * fd; careful about short reads, EINTR and truncated control data. */
#include <endian.h>
#include <errno.h>
#include <string.h>
#include <poll.h>
#include <unistd.h>
#include <sys/socket.h>

#include "ivsock/ivshmem_proto.h"

int ivsock_ivshmem_send(int sock, int64_t value, int fd)
{
	uint64_t le = htole64((uint64_t)value);
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	size_t off = 0;

	memset(&ctl, 0, sizeof(ctl));
	while (off < sizeof(le)) {
		struct iovec iov = { (char *)&le + off, sizeof(le) - off };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
		ssize_t n;

		if (fd >= 0 && off == 0) {
			struct cmsghdr *c;

			msg.msg_control = ctl.buf;
			msg.msg_controllen = sizeof(ctl.buf);
			c = CMSG_FIRSTHDR(&msg);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(c), &fd, sizeof(int));
		}
		n = sendmsg(sock, &msg, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		off += (size_t)n;
	}
	return 0;
}

/* Collect fds from control data; returns count (closing extras) or -EPROTO. */
static int take_fds(struct msghdr *msg, int *fd)
{
	struct cmsghdr *c;
	int got = 0;

	for (c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
		size_t i, n;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < n; i++) {
			int f;

			memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (got == 0 && *fd < 0)
				*fd = f;
			else
				close(f);
			got++;
		}
	}
	return got;
}

int ivsock_ivshmem_recv(int sock, int64_t *value, int *fd)
{
	uint64_t le = 0;
	size_t off = 0;
	int nfds = 0;

	*fd = -1;
	while (off < sizeof(le)) {
		union {
			struct cmsghdr h;
			char buf[CMSG_SPACE(4 * sizeof(int))];
		} ctl;
		struct iovec iov = { (char *)&le + off, sizeof(le) - off };
		struct msghdr msg = {
			.msg_iov = &iov, .msg_iovlen = 1,
			.msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf),
		};
		ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN && off > 0) {
				/* Mid-message: the rest must follow promptly. */
				struct pollfd p = { .fd = sock, .events = POLLIN };

				if (poll(&p, 1, 1000) > 0)
					continue;
				errno = ETIMEDOUT;
			}
			goto err_errno;
		}
		if (n == 0) {
			if (*fd >= 0)
				close(*fd);
			*fd = -1;
			return off ? -EPROTO : -ECONNRESET;
		}
		nfds += take_fds(&msg, fd);
		if (msg.msg_flags & MSG_CTRUNC)
			goto err_proto;
		off += (size_t)n;
	}
	if (nfds > 1)
		goto err_proto;
	*value = (int64_t)le64toh(le);
	return 0;

err_errno:
	{
		int e = -errno;

		if (*fd >= 0)
			close(*fd);
		*fd = -1;
		return e;
	}
err_proto:
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
	return -EPROTO;
}

int ivsock_ivshmem_client_greeting(int sock, struct ivsock_ivshmem_greeting *g)
{
	int64_t v;
	int fd, rc;

	g->shm_fd = -1;
	rc = ivsock_ivshmem_recv(sock, &v, &fd);
	if (rc < 0)
		return rc;
	if (fd >= 0) {
		close(fd);
		return -EPROTO;
	}
	if (v != IVSOCK_IVSHMEM_PROTOCOL_VERSION)
		return -EPROTONOSUPPORT;
	g->version = v;
	rc = ivsock_ivshmem_recv(sock, &v, &fd);
	if (rc < 0)
		return rc;
	if (fd >= 0) {
		close(fd);
		return -EPROTO;
	}
	if (v < 0 || v > IVSOCK_IVSHMEM_MAX_PEER)
		return -EPROTO;
	g->own_id = v;
	rc = ivsock_ivshmem_recv(sock, &v, &fd);
	if (rc < 0)
		return rc;
	if (v != -1 || fd < 0) {
		if (fd >= 0)
			close(fd);
		return -EPROTO;
	}
	g->shm_fd = fd;
	return 0;
}

int ivsock_ivshmem_server_greeting(int sock, int64_t own_id, int shm_fd)
{
	int rc = ivsock_ivshmem_send(sock, IVSOCK_IVSHMEM_PROTOCOL_VERSION, -1);

	if (rc == 0)
		rc = ivsock_ivshmem_send(sock, own_id, -1);
	if (rc == 0)
		rc = ivsock_ivshmem_send(sock, -1, shm_fd);
	return rc;
}
