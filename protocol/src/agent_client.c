// SPDX-License-Identifier: MIT
/* Client side of the shim <-> agent protocol: dial, HELLO, map the region,
 * build a doorbell; PEER_FD and STATUS requests. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "ivsock/agent_client.h"
#include "ivsock/ivsock_dev.h"

#define AGENT_FDS_MAX 2

int ivsock_agent_sockaddr(const char *path, struct sockaddr_un *sa, socklen_t *len)
{
	const char *name = IVSOCK_AGENT_SOCK_ABSTRACT;
	bool abstract = true;
	size_t n;

	if (path && path[0] == '@') {
		name = path + 1;
	} else if (path && path[0]) {
		name = path;
		abstract = false;
	}
	n = strlen(name);
	if (n == 0 || n + 1 > sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (abstract) {
		memcpy(sa->sun_path + 1, name, n);
		*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
	} else {
		memcpy(sa->sun_path, name, n);
		*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	}
	return 0;
}

int ivsock_agent_dial(const char *path)
{
	struct sockaddr_un sa;
	socklen_t len;
	int fd, rc;

	rc = ivsock_agent_sockaddr(path, &sa, &len);
	if (rc < 0)
		return rc;
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	do
		rc = connect(fd, (struct sockaddr *)&sa, len);
	while (rc < 0 && errno == EINTR);
	if (rc < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
}

static void close_fds(int *fds, int n)
{
	for (int i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

ssize_t ivsock_agent_call(int sock, uint16_t type, uint32_t seq,
			  const void *payload, uint32_t len, uint16_t reply_type,
			  void *reply, size_t reply_cap, int *fds, int max_fds, int *nfds)
{
	struct ivsock_msg_hdr h;
	struct iovec iov[2] = {
		{ &h, sizeof(h) },
		{ (void *)payload, len },
	};
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = len ? 2 : 1 };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(AGENT_FDS_MAX * sizeof(int))];
	} ctl;
	struct cmsghdr *c;
	int got = 0, rc;
	ssize_t n;

	*nfds = 0;
	if (max_fds < 0 || max_fds > AGENT_FDS_MAX || reply_cap < sizeof(h) ||
	    len > IVSOCK_MSG_MAX - sizeof(h))
		return -EINVAL;
	ivsock_msg_init(&h, type, len, seq);
	do
		n = sendmsg(sock, &msg, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EPIPE ? -ECONNRESET : -errno;
	if ((size_t)n != sizeof(h) + len)
		return -EIO; /* SEQPACKET: all or nothing */

	iov[0].iov_base = reply;
	iov[0].iov_len = reply_cap;
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = iov;
	msg.msg_iovlen = 1;
	msg.msg_control = ctl.buf;
	msg.msg_controllen = sizeof(ctl.buf);
	do
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	/* n == 0 is EOF or an empty packet: the latter may still carry fds,
	 * so the control data is looked at (and closed below) either way. */
	for (c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		size_t i, k;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < k; i++) {
			int f;

			memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (got < max_fds)
				fds[got++] = f;
			else
				close(f); /* more than we asked for: drop */
		}
	}
	rc = 0;
	if (n == 0)
		rc = -ECONNRESET;
	else if (msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC))
		rc = -EMSGSIZE;
	else
		rc = ivsock_msg_check(reply, (size_t)n, reply_type, 0);
	if (rc == 0 && ((const struct ivsock_msg_hdr *)reply)->seq != seq)
		rc = -EBADE;
	if (rc < 0) {
		close_fds(fds, got);
		return rc;
	}
	*nfds = got;
	return n;
}

/* ---------------- connection ---------------- */

/* The eventfd doorbell is not thread-safe (it caches fds it resolves), so
 * the connection wraps it in a mutex. Lock order: ldb.mu, then conn.lock. */
struct ldb {
	struct ivsock_doorbell db;
	struct ivsock_doorbell *inner;
	pthread_mutex_t mu;
};

static int ldb_notify(struct ivsock_doorbell *db, uint32_t peer, uint32_t vector)
{
	struct ldb *l = (struct ldb *)db;
	int rc;

	pthread_mutex_lock(&l->mu);
	rc = ivsock_doorbell_notify(l->inner, peer, vector);
	pthread_mutex_unlock(&l->mu);
	return rc;
}

static void ldb_free(struct ivsock_doorbell *db)
{
	struct ldb *l = (struct ldb *)db;

	ivsock_doorbell_free(l->inner);
	pthread_mutex_destroy(&l->mu);
	free(l);
}

static const struct ivsock_doorbell_ops ldb_ops = {
	.notify = ldb_notify,
	.free = ldb_free,
};

static int resolve_peer(void *arg, uint32_t peer, uint32_t vector)
{
	return ivsock_agent_peer_fd(arg, peer, vector);
}

static struct ivsock_doorbell *make_evdb(struct ivsock_agent_conn *c, int wait_fd)
{
	struct ldb *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->inner = ivsock_evdb_new(wait_fd, resolve_peer, c);
	if (!l->inner) {
		free(l);
		return NULL;
	}
	pthread_mutex_init(&l->mu, NULL);
	l->db.ops = &ldb_ops;
	l->db.wait_fd = wait_fd;
	return &l->db;
}

static bool reply_valid(const struct ivsock_ag_hello_reply *r)
{
	if (r->backend != IVSOCK_BACKEND_SERVER && r->backend != IVSOCK_BACKEND_PCI)
		return false;
	if (r->vm_index >= IVSOCK_MAX_VMS || r->peer_id > 65535 ||
	    r->client_id == 0 || r->client_id > 65535 || r->vector > 65535)
		return false;
	/* A power of two that fits the address space. */
	return r->region_size >= 4096 && (r->region_size & (r->region_size - 1)) == 0 &&
	       r->region_size <= (uint64_t)SIZE_MAX;
}

int ivsock_agent_connect(const char *path, struct ivsock_agent_conn *out)
{
	struct {
		struct ivsock_msg_hdr h;
		struct ivsock_ag_hello_reply r;
	} rep;
	struct ivsock_ag_hello hello = { .pid = (uint32_t)getpid() };
	int fds[AGENT_FDS_MAX] = { -1, -1 };
	int nfds = 0, rc;
	ssize_t n;

	memset(out, 0, sizeof(*out));
	out->sock = -1;
	pthread_mutex_init(&out->lock, NULL);

	rc = ivsock_agent_dial(path);
	if (rc < 0)
		goto err;
	out->sock = rc;
	n = ivsock_agent_call(out->sock, IVSOCK_AG_HELLO, ++out->seq, &hello, sizeof(hello),
			      IVSOCK_AG_HELLO_REPLY, &rep, sizeof(rep), fds, 2, &nfds);
	if (n < 0) {
		rc = (int)n;
		goto err;
	}
	if (rep.h.status < 0) {
		rc = rep.h.status;
		goto err_fds;
	}
	if ((size_t)n < sizeof(rep) || nfds != 2 || !reply_valid(&rep.r)) {
		rc = -EPROTO;
		goto err_fds;
	}
	out->info = rep.r;
	out->map_size = (size_t)rep.r.region_size;
	out->map = mmap(NULL, out->map_size, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
	if (out->map == MAP_FAILED) {
		out->map = NULL;
		rc = -errno;
		goto err_fds;
	}
	rc = ivsock_region_attach(&out->region, out->map, out->map_size);
	if (rc < 0)
		goto err_fds;
	if (out->region.format_id != rep.r.format_id) {
		rc = -ESTALE;
		goto err_fds;
	}
	if (rep.r.backend == IVSOCK_BACKEND_SERVER) {
		close(fds[0]); /* the mapping keeps the memory */
		fds[0] = -1;
		out->db = make_evdb(out, fds[1]);
	} else {
		struct ivsock_dev_info di;

		/* One MMIO store per doorbell instead of a system call, when the
		 * driver lets us map its doorbell page. */
		if (ioctl(fds[0], IVSOCK_IOC_INFO, &di) == 0 && (di.flags & IVSOCK_DEV_F_REGS_MAP)) {
			out->regs = mmap(NULL, (size_t)sysconf(_SC_PAGESIZE), PROT_READ | PROT_WRITE,
					 MAP_SHARED, fds[0], (off_t)IVSOCK_DEV_MMAP_REGS);
			if (out->regs == MAP_FAILED)
				out->regs = NULL;
		}
		out->db = ivsock_devdb_new(fds[0], fds[1], out->regs);
		if (out->db)
			fds[0] = -1;
	}
	if (!out->db) {
		rc = -ENOMEM;
		goto err_fds;
	}
	return 0;

err_fds:
	close_fds(fds, nfds);
err:
	ivsock_agent_close(out);
	return rc;
}

int ivsock_agent_peer_fd(struct ivsock_agent_conn *c, uint32_t peer, uint32_t vector)
{
	struct ivsock_ag_peer req = { .peer_id = peer, .vector = vector };
	struct ivsock_msg_hdr h;
	int fd = -1, nfds = 0;
	ssize_t n;

	if (c->info.backend != IVSOCK_BACKEND_SERVER)
		return -EOPNOTSUPP;
	pthread_mutex_lock(&c->lock);
	n = ivsock_agent_call(c->sock, IVSOCK_AG_PEER_FD, ++c->seq, &req, sizeof(req),
			      IVSOCK_AG_PEER_FD_REPLY, &h, sizeof(h), &fd, 1, &nfds);
	pthread_mutex_unlock(&c->lock);
	if (n < 0)
		return (int)n;
	if (h.status < 0 || nfds != 1) {
		if (nfds)
			close(fd);
		return h.status < 0 ? h.status : -EPROTO;
	}
	return fd;
}

static int status_on(int sock, uint32_t seq, char **json)
{
	struct ivsock_msg_hdr *h;
	char *buf = malloc(IVSOCK_MSG_MAX + 1);
	uint32_t len;
	int nfds = 0;
	ssize_t n;

	if (!buf)
		return -ENOMEM;
	n = ivsock_agent_call(sock, IVSOCK_AG_STATUS, seq, NULL, 0, IVSOCK_AG_STATUS_REPLY,
			      buf, IVSOCK_MSG_MAX, NULL, 0, &nfds);
	if (n < 0) {
		free(buf);
		return (int)n;
	}
	h = (struct ivsock_msg_hdr *)buf;
	if (h->status < 0) {
		int rc = h->status;

		free(buf);
		return rc;
	}
	len = h->len; /* == n - sizeof(*h), checked by ivsock_agent_call() */
	memmove(buf, buf + sizeof(*h), len);
	buf[len] = '\0';
	*json = buf;
	return 0;
}

int ivsock_agent_status(struct ivsock_agent_conn *c, char **json)
{
	int rc;

	pthread_mutex_lock(&c->lock);
	rc = status_on(c->sock, ++c->seq, json);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int ivsock_agent_status_at(const char *path, char **json)
{
	int fd = ivsock_agent_dial(path), rc;

	if (fd < 0)
		return fd;
	rc = status_on(fd, 1, json);
	close(fd);
	return rc;
}

void ivsock_agent_close(struct ivsock_agent_conn *c)
{
	if (!c)
		return;
	if (c->db) {
		ivsock_doorbell_free(c->db);
		c->db = NULL;
	}
	if (c->regs) {
		munmap(c->regs, (size_t)sysconf(_SC_PAGESIZE));
		c->regs = NULL;
	}
	if (c->map) {
		munmap(c->map, c->map_size);
		c->map = NULL;
	}
	if (c->sock >= 0) {
		close(c->sock);
		c->sock = -1;
	}
}
