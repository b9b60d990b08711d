// SPDX-License-Identifier: MIT
/* Client side of the shim <-> agent protocol: dial, HELLO, map the region,
 * build a doorbell; PEER_FD and STATUS requests. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>

#include "ivsock/agent_client.h"
#include "ivsock/barrier.h"
#include "ivsock/directory.h"
#include "ivsock/ivsock_dev.h"
#include "ivsock/slot.h"

#define AGENT_FDS_MAX 2
#define QUIET_NS (5ULL * 1000000000ULL) /* after a timeout: fail fast */

/* recvmsg attempts before sleeping in poll for a reply (~20 us) */
#define AGENT_REPLY_SPINS 64

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/*
 * Wait for events on fd until deadline (CLOCK_MONOTONIC ns). A raw ppoll:
 * inside the shim, poll() is the shim's own multiplexer.
 * @return 1 ready, 0 deadline passed, -errno.
 */
static int wait_until(int fd, short events, uint64_t deadline)
{
	for (;;) {
		struct pollfd p = { .fd = fd, .events = events };
		uint64_t now = now_ns(), left;
		struct timespec ts;
		long rc;

		if (now >= deadline)
			return 0;
		left = deadline - now;
		ts.tv_sec = (time_t)(left / 1000000000ULL);
		ts.tv_nsec = (long)(left % 1000000000ULL);
		rc = syscall(SYS_ppoll, &p, 1, &ts, NULL, (size_t)8);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			return -errno;
		if (rc > 0)
			return 1;
	}
}

static uint64_t deadline_of(int timeout_ms)
{
	if (timeout_ms <= 0)
		timeout_ms = IVSOCK_AGENT_TIMEOUT_MS_DEFAULT;
	return now_ns() + (uint64_t)timeout_ms * 1000000ULL;
}

/* ---------------- options ---------------- */

void ivsock_agent_opts_default(struct ivsock_agent_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->timeout_ms = IVSOCK_AGENT_TIMEOUT_MS_DEFAULT;
	o->db_cap = IVSOCK_AGENT_DB_CAP_DEFAULT;
	o->db_neg_ms = IVSOCK_AGENT_DB_NEG_MS_DEFAULT;
}

static bool parse_ulong(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	if (!s || *s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end != '\0' || v > max)
		return false;
	*out = v;
	return true;
}

int ivsock_agent_opts_from_env(struct ivsock_agent_opts *o)
{
	const char *uids = secure_getenv("IVSOCK_AGENT_UID");
	const char *tmo = getenv("IVSOCK_AGENT_TIMEOUT_MS");
	unsigned long v;
	int rc = 0;

	ivsock_agent_opts_default(o);
	if (tmo && *tmo) {
		if (parse_ulong(tmo, 3600000, &v) && v > 0)
			o->timeout_ms = (int)v;
		else
			rc = -EINVAL;
	}
	if (uids && *uids) {
		char buf[128], *tok, *save = NULL;
		struct ivsock_agent_opts t = *o;

		if (strlen(uids) >= sizeof(buf))
			return -EINVAL;
		strcpy(buf, uids);
		t.ntrusted = 0;
		for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
			if (t.ntrusted >= IVSOCK_AGENT_TRUSTED_MAX ||
			    !parse_ulong(tok, (uid_t)-2, &v))
				return -EINVAL; /* all or nothing */
			t.trusted[t.ntrusted++] = (uid_t)v;
		}
		*o = t;
	}
	return rc;
}

/* ---------------- checks ---------------- */

int ivsock_agent_check_peer(int sock, const struct ivsock_agent_opts *o)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);

	if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
		return -errno;
	if (len != sizeof(cr))
		return -EPERM;
	if (cr.uid == 0)
		return 0;
	for (uint32_t i = 0; o && i < o->ntrusted && i < IVSOCK_AGENT_TRUSTED_MAX; i++)
		if (o->trusted[i] == cr.uid)
			return 0;
	return -EPERM;
}

int ivsock_agent_check_region_fd(int fd, uint32_t backend, uint64_t size)
{
	struct stat st;

	if (fd < 0 || fstat(fd, &st) < 0)
		return -EBADFD;
	if (backend == IVSOCK_BACKEND_SERVER) {
		int seals;

		/* Only memfds (shmem, hugetlbfs) have seals: a file or a
		 * device fails here. Without F_SEAL_SHRINK, whoever else
		 * holds the fd could truncate it under our mapping: SIGBUS. */
		if (!S_ISREG(st.st_mode))
			return -EBADFD;
		seals = fcntl(fd, F_GET_SEALS);
		if (seals < 0 || !(seals & F_SEAL_SHRINK))
			return -EBADFD;
		if (st.st_size < 0 || (uint64_t)st.st_size < size)
			return -EBADFD;
		return 0;
	}
	if (backend == IVSOCK_BACKEND_PCI) {
		struct ivsock_dev_window w;

		/* A read-only window of the guest driver onto the tables: BAR2
		 * memory, whose size does not change under a mapping (unplug
		 * zaps it), and nothing writable or ringable through it. */
		if (ioctl(fd, IVSOCK_IOC_WIN_INFO, &w) < 0 || w.offset != 0 || w.length < size ||
		    w.wr_length != 0 || w.ring_peer != IVSOCK_WIN_NO_RING)
			return -EBADFD;
		return 0;
	}
	return -EBADFD;
}

int ivsock_agent_check_eventfd(int fd)
{
	static const char want[] = "anon_inode:[eventfd]";
	char path[40], link[64];
	struct stat st, ref;
	uint64_t zero = 0;
	ssize_t n;
	int probe, rc;

	if (fd < 0)
		return -EBADFD;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof(link));
	if (n >= 0)
		return (size_t)n == sizeof(want) - 1 && memcmp(link, want, (size_t)n) == 0
			       ? 0 : -EBADFD;
	if (errno != ENOENT && errno != EACCES && errno != ENOSYS && errno != EPERM)
		return -EBADFD;
	/* No /proc: the anonymous inode every eventfd shares, and an 8-byte
	 * write of 0 (a no-op on an eventfd; timerfd, signalfd, epoll and
	 * the other anonymous files refuse it). */
	probe = eventfd(0, EFD_CLOEXEC);
	if (probe < 0)
		return -EBADFD;
	rc = fstat(probe, &ref) == 0 && fstat(fd, &st) == 0 && st.st_dev == ref.st_dev &&
	     st.st_ino == ref.st_ino ? 0 : -EBADFD;
	close(probe);
	if (rc == 0) {
		do
			n = write(fd, &zero, sizeof(zero));
		while (n < 0 && errno == EINTR);
		if (n != (ssize_t)sizeof(zero) && !(n < 0 && errno == EAGAIN))
			rc = -EBADFD;
	}
	return rc;
}

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

int ivsock_agent_dial_opts(const char *path, const struct ivsock_agent_opts *o)
{
	struct ivsock_agent_opts env;
	struct sockaddr_un sa;
	uint64_t deadline;
	socklen_t len;
	int fd, rc;

	if (!o) {
		ivsock_agent_opts_from_env(&env);
		o = &env;
	}
	rc = ivsock_agent_sockaddr(path, &sa, &len);
	if (rc < 0)
		return rc;
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	deadline = deadline_of(o->timeout_ms);
	for (;;) {
		rc = connect(fd, (struct sockaddr *)&sa, len);
		if (rc == 0 || errno == EISCONN)
			break;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN) {
			rc = -errno;
			goto err;
		}
		/* Backlog full (a listener that never accepts, or a flood): a
		 * non-blocking UNIX connect has no "in progress", so retry. */
		if (now_ns() >= deadline) {
			rc = -ETIMEDOUT;
			goto err;
		}
		wait_until(-1, 0, now_ns() + 5000000ULL < deadline ? now_ns() + 5000000ULL
								  : deadline);
	}
	/* Before a single byte: is that the agent? Anyone can bind an
	 * abstract name first. */
	rc = ivsock_agent_check_peer(fd, o);
	if (rc < 0)
		goto err;
	return fd;
err:
	close(fd);
	return rc;
}

int ivsock_agent_dial(const char *path)
{
	return ivsock_agent_dial_opts(path, NULL);
}

/* Take the fds of a received message: up to max into fds[*got], the rest
 * closed. */
static void take_fds(struct msghdr *msg, int *fds, int max, int *got)
{
	struct cmsghdr *c;

	for (c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
		size_t i, k;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < k; i++) {
			int f;

			memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (*got < max)
				fds[(*got)++] = f;
			else
				close(f); /* more than we asked for: drop */
		}
	}
}

/* An IVSOCK_AG_REFUSED notice (checked header, seq 0, status < 0)? */
static int refusal(const void *buf, ssize_t n)
{
	struct ivsock_msg_hdr h;

	if (n < (ssize_t)sizeof(h) || ivsock_msg_check(buf, (size_t)n, IVSOCK_AG_REFUSED, 0) < 0)
		return 0;
	memcpy(&h, buf, sizeof(h));
	return h.seq == 0 && h.status < 0 && h.status > -4096 ? h.status : 0;
}

/* The agent closed on us: a refusal notice may still be queued. */
static int queued_refusal(int sock)
{
	struct ivsock_msg_hdr h;
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(AGENT_FDS_MAX * sizeof(int))];
	} ctl;
	struct iovec iov = { &h, sizeof(h) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf) };
	int none[1], got = 0;
	ssize_t n;

	for (int tries = 0; tries < 2; tries++) {
		n = recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n >= 0) {
			take_fds(&msg, none, 0, &got);
			return refusal(&h, n);
		}
		if (errno != ECONNRESET && errno != EINTR)
			break;
		/* a pending socket error is reported before queued data */
	}
	return 0;
}

ssize_t ivsock_agent_call_timeout(int sock, uint16_t type, uint32_t seq,
				  const void *payload, uint32_t len, uint16_t reply_type,
				  void *reply, size_t reply_cap, int *fds, int max_fds,
				  int *nfds, int timeout_ms)
{
	return ivsock_agent_call_fd(sock, type, seq, payload, len, -1, reply_type, reply,
				    reply_cap, fds, max_fds, nfds, timeout_ms);
}

/* Send one request (with send_fd as SCM_RIGHTS when >= 0), waiting for
 * room until deadline. @return 0 or -errno. */
static int send_request(int sock, uint16_t type, uint32_t seq, const void *payload,
			uint32_t len, int send_fd, uint64_t deadline)
{
	struct ivsock_msg_hdr h;
	struct iovec iov[2] = {
		{ &h, sizeof(h) },
		{ (void *)payload, len },
	};
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = len ? 2 : 1 };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	ssize_t n;
	int rc;

	if (len > IVSOCK_MSG_MAX - sizeof(h))
		return -EINVAL;
	ivsock_msg_init(&h, type, len, seq);
	if (send_fd >= 0) {
		struct cmsghdr *cm;

		memset(&ctl, 0, sizeof(ctl));
		msg.msg_control = ctl.buf;
		msg.msg_controllen = sizeof(ctl.buf);
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &send_fd, sizeof(int));
	}
	for (;;) {
		n = sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n >= 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN) {
			rc = wait_until(sock, POLLOUT, deadline);
			if (rc <= 0)
				return rc == 0 ? -ETIMEDOUT : rc;
			continue;
		}
		if (errno == EPIPE || errno == ECONNRESET) {
			rc = queued_refusal(sock);
			return rc < 0 ? rc : -ECONNRESET;
		}
		return -errno;
	}
	return (size_t)n == sizeof(h) + len ? 0 : -EIO; /* SEQPACKET: all or nothing */
}

int ivsock_agent_send(int sock, uint16_t type, uint32_t seq, const void *payload,
		      uint32_t len, int send_fd, int timeout_ms)
{
	return send_request(sock, type, seq, payload, len, send_fd, deadline_of(timeout_ms));
}

ssize_t ivsock_agent_call_fd(int sock, uint16_t type, uint32_t seq, const void *payload,
			     uint32_t len, int send_fd, uint16_t reply_type, void *reply,
			     size_t reply_cap, int *fds, int max_fds, int *nfds, int timeout_ms)
{
	struct iovec iov[1];
	struct msghdr msg;
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(AGENT_FDS_MAX * sizeof(int))];
	} ctl;
	uint64_t deadline = deadline_of(timeout_ms);
	bool reset_once = false;
	int got, rc, spins = 0;
	ssize_t n;

	*nfds = 0;
	if (max_fds < 0 || max_fds > AGENT_FDS_MAX || reply_cap < sizeof(struct ivsock_msg_hdr) ||
	    len > IVSOCK_MSG_MAX - sizeof(struct ivsock_msg_hdr))
		return -EINVAL;
	rc = send_request(sock, type, seq, payload, len, send_fd, deadline);
	if (rc < 0)
		return rc;

	for (;;) {
		got = 0;
		iov[0].iov_base = reply;
		iov[0].iov_len = reply_cap;
		memset(&msg, 0, sizeof(msg));
		msg.msg_iov = iov;
		msg.msg_iovlen = 1;
		msg.msg_control = ctl.buf;
		msg.msg_controllen = sizeof(ctl.buf);
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				/* The agent answers within microseconds when
				 * it is awake: a short spin saves us a sleep
				 * and a wake-up on connection set-up. */
				if (spins++ < AGENT_REPLY_SPINS) {
					ivsock_cpu_relax();
					continue;
				}
				rc = wait_until(sock, POLLIN, deadline);
				if (rc <= 0)
					return rc == 0 ? -ETIMEDOUT : rc;
				continue;
			}
			if (errno == ECONNRESET && !reset_once) {
				/* reported before a queued refusal notice */
				reset_once = true;
				continue;
			}
			return -errno;
		}
		/* n == 0 is EOF or an empty packet: the latter may still carry
		 * fds, so the control data is looked at (and closed below)
		 * either way. */
		take_fds(&msg, fds, max_fds, &got);
		if (n == 0)
			rc = -ECONNRESET;
		else if (msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC))
			rc = -EMSGSIZE;
		else
			rc = ivsock_msg_check(reply, (size_t)n, 0, 0);
		if (rc == 0 && (rc = refusal(reply, n)) == 0) {
			uint32_t rseq = ((const struct ivsock_msg_hdr *)reply)->seq;

			if ((int32_t)(rseq - seq) < 0) {
				/* The late answer to a request that timed
				 * out: drop it and wait for ours. */
				for (int i = 0; i < got; i++)
					close(fds[i]);
				continue;
			}
			rc = ivsock_msg_check(reply, (size_t)n, reply_type, 0);
			if (rc == 0 && rseq != seq)
				rc = -EBADE;
		}
		if (rc < 0) {
			for (int i = 0; i < got; i++)
				close(fds[i]);
			return rc;
		}
		*nfds = got;
		return n;
	}
}

ssize_t ivsock_agent_call(int sock, uint16_t type, uint32_t seq,
			  const void *payload, uint32_t len, uint16_t reply_type,
			  void *reply, size_t reply_cap, int *fds, int max_fds, int *nfds)
{
	return ivsock_agent_call_timeout(sock, type, seq, payload, len, reply_type, reply,
					 reply_cap, fds, max_fds, nfds,
					 IVSOCK_AGENT_TIMEOUT_MS_DEFAULT);
}

/* ---------------- connection ---------------- */

static void close_fds(int *fds, int n)
{
	for (int i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

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

/*
 * A peer's identity for the doorbell cache: the slot word of the live
 * directory entry with its peer ID (generation, state, own index). When
 * ivsockd gives the ID to another VM, or the VM dies, the word changes.
 */
static uint64_t peer_tag(const struct ivsock_region *rg, uint32_t peer)
{
	int vm = ivsock_dir_find_peer(rg, peer);

	if (vm < 0)
		return 0;
	return ivsock_load_acquire(&rg->vms[vm].slot);
}

static bool peer_same(void *arg, uint32_t peer, uint64_t tag)
{
	const struct ivsock_agent_conn *c = arg;
	const struct ivsock_region *rg = &c->region;
	uint32_t vm = ivsock_slot_unpack(tag).vm;

	if (vm >= rg->vm_cap)
		return false;
	return ivsock_load_acquire(&rg->vms[vm].slot) == tag &&
	       *(volatile const uint32_t *)&rg->vms[vm].peer_id == peer;
}

static int resolve_peer(void *arg, uint32_t peer, uint32_t vector, uint64_t *tag)
{
	struct ivsock_agent_conn *c = arg;

	*tag = peer_tag(&c->region, peer);
	return ivsock_agent_peer_fd(c, peer, vector);
}

static struct ivsock_doorbell *make_evdb(struct ivsock_agent_conn *c, int wait_fd)
{
	struct ldb *l = calloc(1, sizeof(*l));
	struct ivsock_evdb_lazy lz = {
		.resolve = resolve_peer,
		.same = peer_same,
		.arg = c,
		.cap = c->opts.db_cap ? c->opts.db_cap : IVSOCK_AGENT_DB_CAP_DEFAULT,
		.neg_ms = c->opts.db_neg_ms ? c->opts.db_neg_ms : IVSOCK_AGENT_DB_NEG_MS_DEFAULT,
	};

	if (!l)
		return NULL;
	l->inner = ivsock_evdb_new_lazy(wait_fd, &lz);
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
	/* A power of two that fits the address space; the tables a page
	 * multiple inside it. */
	return r->region_size >= 4096 && (r->region_size & (r->region_size - 1)) == 0 &&
	       r->region_size <= (uint64_t)SIZE_MAX && r->tables_size &&
	       r->tables_size % IVSOCK_PAGE == 0 && r->tables_size < r->region_size;
}

int ivsock_agent_connect_opts(const char *path, const struct ivsock_agent_opts *o,
			      struct ivsock_agent_conn *out)
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
	out->region_fd = -1;
	pthread_mutex_init(&out->lock, NULL);
	if (o)
		out->opts = *o;
	else
		ivsock_agent_opts_from_env(&out->opts);
	if (out->opts.timeout_ms <= 0)
		out->opts.timeout_ms = IVSOCK_AGENT_TIMEOUT_MS_DEFAULT;

	rc = ivsock_agent_dial_opts(path, &out->opts);
	if (rc < 0)
		goto err;
	out->sock = rc;
	n = ivsock_agent_call_timeout(out->sock, IVSOCK_AG_HELLO, ++out->seq, &hello,
				      sizeof(hello), IVSOCK_AG_HELLO_REPLY, &rep, sizeof(rep),
				      fds, 2, &nfds, out->opts.timeout_ms);
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
	/* Nothing received is used before it is checked: a region fd that
	 * could shrink under the mapping would SIGBUS us later. */
	if (ivsock_agent_check_region_fd(fds[0], rep.r.backend,
					 rep.r.backend == IVSOCK_BACKEND_SERVER ? rep.r.region_size
										: rep.r.tables_size) < 0 ||
	    ivsock_agent_check_eventfd(fds[1]) < 0) {
		rc = -EBADFD;
		goto err_fds;
	}
	out->info = rep.r;
	/* The tables only, read-only: a process never writes them (the agent
	 * does, on request) and maps ring memory one block at a time. */
	out->map_size = (size_t)rep.r.tables_size;
	out->map = mmap(NULL, out->map_size, PROT_READ, MAP_SHARED, fds[0], 0);
	if (out->map == MAP_FAILED) {
		out->map = NULL;
		rc = -errno;
		goto err_fds;
	}
	rc = ivsock_region_attach_tables(&out->region, out->map, out->map_size,
					 (size_t)rep.r.region_size);
	if (rc < 0)
		goto err_fds;
	if (out->region.format_id != rep.r.format_id) {
		rc = -ESTALE;
		goto err_fds;
	}
	if (rep.r.backend == IVSOCK_BACKEND_SERVER) {
		out->region_fd = fds[0]; /* blocks are mapped from it */
		fds[0] = -1;
		if (!getenv("IVSOCK_MAP_BLOCKS") || strcmp(getenv("IVSOCK_MAP_BLOCKS"), "1")) {
			out->whole = mmap(NULL, (size_t)rep.r.region_size, PROT_READ | PROT_WRITE,
					  MAP_SHARED, out->region_fd, 0);
			if (out->whole == MAP_FAILED)
				out->whole = NULL;
		}
		out->db = make_evdb(out, fds[1]);
	} else {
		/* the tables window is only mapped; rings go through each
		 * channel's own window */
		close(fds[0]);
		fds[0] = -1;
		out->db = ivsock_waitdb_new(fds[1]);
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

int ivsock_agent_connect(const char *path, struct ivsock_agent_conn *out)
{
	return ivsock_agent_connect_opts(path, NULL, out);
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
	if (c->quiet_until_ns && now_ns() < c->quiet_until_ns) {
		pthread_mutex_unlock(&c->lock);
		return -ETIMEDOUT;
	}
	n = ivsock_agent_call_timeout(c->sock, IVSOCK_AG_PEER_FD, ++c->seq, &req, sizeof(req),
				      IVSOCK_AG_PEER_FD_REPLY, &h, sizeof(h), &fd, 1, &nfds,
				      c->opts.timeout_ms);
	if (n == -ETIMEDOUT)
		c->quiet_until_ns = now_ns() + QUIET_NS;
	pthread_mutex_unlock(&c->lock);
	if (n < 0)
		return (int)n;
	if (h.status < 0 || nfds != 1) {
		if (nfds)
			close(fd);
		return h.status < 0 ? h.status : -EPROTO;
	}
	if (ivsock_agent_check_eventfd(fd) < 0) {
		close(fd);
		return -EBADFD;
	}
	return fd;
}

static int status_on(int sock, uint32_t seq, int timeout_ms, char **json)
{
	struct ivsock_msg_hdr *h;
	char *buf = malloc(IVSOCK_MSG_MAX + 1);
	uint32_t len;
	int nfds = 0;
	ssize_t n;

	if (!buf)
		return -ENOMEM;
	n = ivsock_agent_call_timeout(sock, IVSOCK_AG_STATUS, seq, NULL, 0,
				      IVSOCK_AG_STATUS_REPLY, buf, IVSOCK_MSG_MAX, NULL, 0,
				      &nfds, timeout_ms);
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
	rc = status_on(c->sock, ++c->seq, c->opts.timeout_ms, json);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int ivsock_agent_status_at(const char *path, char **json)
{
	struct ivsock_agent_opts o;
	int fd, rc;

	ivsock_agent_opts_from_env(&o);
	fd = ivsock_agent_dial_opts(path, &o);
	if (fd < 0)
		return fd;
	rc = status_on(fd, 1, o.timeout_ms, json);
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
	if (c->whole) {
		munmap(c->whole, (size_t)c->info.region_size);
		c->whole = NULL;
	}
	if (c->region_fd >= 0) {
		close(c->region_fd);
		c->region_fd = -1;
	}
	if (c->sock >= 0) {
		close(c->sock);
		c->sock = -1;
	}
}
