// SPDX-License-Identifier: MIT
/* The agent's UNIX SOCK_SEQPACKET service for shim processes: peer-credential
 * checks, HELLO / PEER_FD / STATUS, and releasing a client's slots when its
 * connection closes (process exit or kill -9). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "ivsock/agent_client.h"
#include "ivsock/channel.h"
#include "ivsock/listener.h"
#include "ivsock/offer.h"
#include "agent.h"
#include "log.h"
#include "util.h"

#define AGENT_ACCEPT_BATCH    64
#define AGENT_LISTEN_PAUSE_MS 200

int agent_listen_open(struct agent *a)
{
	struct sockaddr_un sa;
	socklen_t len;
	int fd, rc;

	rc = ivsock_agent_sockaddr(a->opt.listen, &sa, &len);
	if (rc < 0)
		return rc;
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (sa.sun_path[0])
		unlink(sa.sun_path); /* a stale socket of a previous agent */
	if (bind(fd, (struct sockaddr *)&sa, len) < 0 || listen(fd, SOMAXCONN) < 0) {
		rc = -errno;
		log_err("cannot listen on %s%s: %s", sa.sun_path[0] ? "" : "@",
			sa.sun_path[0] ? sa.sun_path : sa.sun_path + 1, strerror(-rc));
		close(fd);
		return rc;
	}
	/* Who may connect is decided by SO_PEERCRED, not by file modes. */
	if (sa.sun_path[0])
		chmod(sa.sun_path, 0666);
	a->lfd = fd;
	return 0;
}

/* Every local user, unless --allow-user/--allow-group restrict it (root
 * and the agent's own user are always in). */
static bool peer_allowed(struct agent *a, int fd, struct ucred *cr)
{
	gid_t groups[256];
	socklen_t len = sizeof(*cr);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cr, &len) < 0)
		return false;
	if (!a->restricted || cr->uid == 0 || cr->uid == a->euid)
		return true;
	for (uint32_t i = 0; i < a->nallow_uid; i++)
		if (a->allow_uid[i] == cr->uid)
			return true;
	if (!a->nallow_gid)
		return false;
	for (uint32_t i = 0; i < a->nallow_gid; i++)
		if (a->allow_gid[i] == cr->gid)
			return true;
	len = sizeof(groups);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0)
		return false;
	for (size_t k = 0; k < len / sizeof(gid_t); k++)
		for (uint32_t i = 0; i < a->nallow_gid; i++)
			if (groups[k] == a->allow_gid[i])
				return true;
	return false;
}

/* Tell a connection why it is closed, without waiting (the shim reads it
 * as the answer to its first request). */
static void refuse(int fd, int32_t status)
{
	struct ivsock_msg_hdr h;
	ssize_t n;

	ivsock_msg_init(&h, IVSOCK_AG_REFUSED, 0, 0);
	h.status = status;
	do
		n = send(fd, &h, sizeof(h), MSG_NOSIGNAL | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	close(fd);
}

static unsigned long clients_of(struct agent *a, uid_t uid)
{
	unsigned long n = 0;

	for (struct agent_client *c = a->clients; c; c = c->next)
		n += c->uid == uid;
	return n;
}

/* Stop listening for a while (the tick resumes): level-triggered epoll
 * would otherwise report the pending connection again at once, forever. */
static void pause_listen(struct agent *a)
{
	struct epoll_event ev = { .events = 0, .data.ptr = &a->ev_listen };

	if (a->listen_paused)
		return;
	if (epoll_ctl(a->epfd, EPOLL_CTL_MOD, a->lfd, &ev) == 0) {
		a->listen_paused = true;
		a->listen_resume_ms = agent_now_ms() + AGENT_LISTEN_PAUSE_MS;
	}
}

void agent_listen_tick(struct agent *a, uint64_t now_ms)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &a->ev_listen };

	if (a->listen_paused && now_ms >= a->listen_resume_ms &&
	    epoll_ctl(a->epfd, EPOLL_CTL_MOD, a->lfd, &ev) == 0)
		a->listen_paused = false;
	if (a->reserve_fd < 0)
		a->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* Out of fds: spend the reserve fd to take the oldest pending connection
 * off the queue and close it with a reason. @return true if that worked
 * (or nothing was pending), false if the reserve is gone too. */
static bool shed_one(struct agent *a)
{
	int fd;

	if (a->reserve_fd < 0)
		return false;
	close(a->reserve_fd);
	a->reserve_fd = -1;
	fd = accept4(a->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd >= 0) {
		a->shed++;
		refuse(fd, -EMFILE);
	}
	a->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	return a->reserve_fd >= 0 && (fd >= 0 || errno == EAGAIN);
}

/* Credentials are checked here, once: refused connections never reach
 * the epoll set and never hold an fd beyond this call. */
static void admit(struct agent *a, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP };
	struct agent_client *c;
	struct ucred cr = { .pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1 };

	if (!peer_allowed(a, fd, &cr)) {
		a->refused++;
		log_rl(LOG_WARNING, "refusing pid %d uid %u: not in --allow-user/--allow-group",
		       (int)cr.pid, (unsigned)cr.uid);
		refuse(fd, -EACCES);
		return;
	}
	if (cr.uid != 0 && a->max_per_uid && clients_of(a, cr.uid) >= a->max_per_uid) {
		a->capped++;
		log_rl(LOG_WARNING, "refusing pid %d uid %u: it already has %lu connections "
		       "(--max-clients-per-uid)", (int)cr.pid, (unsigned)cr.uid, a->max_per_uid);
		refuse(fd, -EUSERS);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		refuse(fd, -ENOMEM);
		return;
	}
	c->ev.kind = EV_CLIENT;
	c->fd = fd;
	c->pid = cr.pid;
	c->uid = cr.uid;
	c->allowed = true;
	c->be_fd = -1;
	ev.data.ptr = c;
	if (epoll_ctl(a->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		refuse(fd, -ENOMEM);
		free(c);
		return;
	}
	c->next = a->clients;
	a->clients = c;
	a->nclients++;
}

void agent_accept(struct agent *a)
{
	/* A batch per wake-up: the rest of the loop (doorbells, mailbox)
	 * is not starved by a connection flood. */
	for (int i = 0; i < AGENT_ACCEPT_BATCH; i++) {
		int fd = accept4(a->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd >= 0) {
			admit(a, fd);
			continue;
		}
		switch (errno) {
		case EINTR:
		case ECONNABORTED:
			continue;
		case EAGAIN:
			return;
		case EMFILE:
		case ENFILE:
		case ENOBUFS:
		case ENOMEM:
			log_rl(LOG_WARNING, "accept: %s: closing new connections at once "
			       "until fds are free", strerror(errno));
			if (!shed_one(a)) {
				pause_listen(a);
				return;
			}
			continue;
		default:
			log_rl(LOG_WARNING, "accept: %s", strerror(errno));
			pause_listen(a);
			return;
		}
	}
}

int agent_reply(struct agent_client *c, uint16_t type, uint32_t seq, int32_t status,
		 const void *payload, uint32_t len, const int *fds, int nfds)
{
	struct ivsock_msg_hdr h;
	struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)payload, len } };
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = len ? 2 : 1 };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(2 * sizeof(int))];
	} ctl;
	ssize_t n;

	ivsock_msg_init(&h, type, len, seq);
	h.status = status;
	if (nfds > 0) {
		struct cmsghdr *cm;

		memset(&ctl, 0, sizeof(ctl));
		msg.msg_control = ctl.buf;
		msg.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
		memcpy(CMSG_DATA(cm), fds, (size_t)nfds * sizeof(int));
	}
	do
		n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : 0;
}

static void do_hello(struct agent *a, struct agent_client *c, uint32_t seq)
{
	struct ivsock_ag_hello_reply r = { 0 };
	int fds[2] = { -1, -1 }, keep = -1, id, rc;
	uint32_t vector;

	if (c->hello) {
		agent_reply(c, IVSOCK_AG_HELLO_REPLY, seq, -EALREADY, NULL, 0, NULL, 0);
		return;
	}
	id = agent_id_alloc(&a->ids);
	if (id < 0) {
		agent_reply(c, IVSOCK_AG_HELLO_REPLY, seq, id, NULL, 0, NULL, 0);
		return;
	}
	vector = agent_vector_alloc(&a->ids);
	rc = a->be.ops->client_fds(&a->be, vector, a->be.rg.tables_size, fds, &keep);
	if (rc < 0) {
		log_rl(LOG_WARNING, "pid %d: no fds for vector %u: %s", (int)c->pid, vector,
		       strerror(-rc));
		agent_vector_free(&a->ids, vector);
		agent_id_free(&a->ids, (uint32_t)id);
		agent_reply(c, IVSOCK_AG_HELLO_REPLY, seq, rc, NULL, 0, NULL, 0);
		return;
	}
	r.backend = a->be.ops->kind;
	r.vm_index = a->be.vm_index;
	r.vm_gen = a->be.vm_gen;
	r.peer_id = a->be.peer_id;
	r.client_id = (uint32_t)id;
	r.vector = vector;
	r.region_size = a->be.size;
	r.format_id = a->be.rg.format_id;
	r.tables_size = a->be.rg.tables_size;
	r.uid = (uint32_t)c->uid;
	rc = agent_reply(c, IVSOCK_AG_HELLO_REPLY, seq, 0, &r, sizeof(r), fds, 2);
	close(fds[0]);
	close(fds[1]);
	if (rc < 0) {
		if (keep >= 0)
			close(keep);
		agent_vector_free(&a->ids, vector);
		agent_id_free(&a->ids, (uint32_t)id);
		return;
	}
	c->hello = true;
	c->id = (uint32_t)id;
	c->vector = vector;
	c->be_fd = keep;
	log_debug("client %u: pid %d uid %u, vector %u", c->id, (int)c->pid,
		  (unsigned)c->uid, vector);
}

static void do_peer_fd(struct agent *a, struct agent_client *c, uint32_t seq,
		       const struct ivsock_ag_peer *p)
{
	int fd;

	if (p->peer_id > 65535 || p->vector > 65535) {
		agent_reply(c, IVSOCK_AG_PEER_FD_REPLY, seq, -EINVAL, NULL, 0, NULL, 0);
		return;
	}
	fd = a->be.ops->peer_fd(&a->be, p->peer_id, p->vector);
	if (fd < 0) {
		agent_reply(c, IVSOCK_AG_PEER_FD_REPLY, seq, fd, NULL, 0, NULL, 0);
		return;
	}
	agent_reply(c, IVSOCK_AG_PEER_FD_REPLY, seq, 0, NULL, 0, &fd, 1);
	close(fd);
}

static void do_status(struct agent *a, struct agent_client *c, uint32_t seq)
{
	char *json = agent_status_json(a, c->uid == 0, c->uid);
	size_t len = json ? strlen(json) : 0;

	if (!json || len > IVSOCK_MSG_MAX - sizeof(struct ivsock_msg_hdr))
		agent_reply(c, IVSOCK_AG_STATUS_REPLY, seq, json ? -EMSGSIZE : -ENOMEM, NULL, 0,
		      NULL, 0);
	else
		agent_reply(c, IVSOCK_AG_STATUS_REPLY, seq, 0, json, (uint32_t)len, NULL, 0);
	free(json);
}

/* Close the connection; a client that said HELLO loses everything it held. */
static void client_drop(struct agent *a, struct agent_client *c, bool release)
{
	struct agent_client **pp;

	for (pp = &a->clients; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	epoll_ctl(a->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	a->nclients--;
	if (c->hello && release) {
		struct ivsock_region *rg = &a->be.rg;
		uint8_t vm = (uint8_t)a->be.vm_index;
		uint16_t id = (uint16_t)c->id;
		int nch, nof, nli;

		broker_client_gone(a, c);
		nof = ivsock_offer_release_owner(rg, vm, id);
		nli = ivsock_listener_release_owner(rg, vm, id);
		nch = ivsock_chan_release_owner(rg, vm, id, agent_backend_ring, &a->be);
		if (nch || nof || nli)
		{
			/* a non-root client must not be able to flood the log */
			if (c->uid == 0)
				log_info("client %u (pid %d) gone: released %d channels, "
					 "%d offers, %d listeners", c->id, (int)c->pid, nch, nof, nli);
			else
				log_rl(LOG_INFO, "client %u (pid %d uid %u) gone: released %d "
				       "channels, %d offers, %d listeners", c->id, (int)c->pid,
				       (unsigned)c->uid, nch, nof, nli);
		}
		else
			log_debug("client %u (pid %d) gone", c->id, (int)c->pid);
		agent_vector_free(&a->ids, c->vector);
		agent_id_free(&a->ids, c->id);
	}
	if (c->be_fd >= 0)
		close(c->be_fd);
	free(c);
}

void agent_client_event(struct agent *a, struct agent_client *c, uint32_t events)
{
	static uint8_t buf[IVSOCK_MSG_MAX]; /* one request at a time: the loop is single-threaded */
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(4 * sizeof(int))];
	} ctl;

	for (;;) {
		struct iovec iov = { buf, sizeof(buf) };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
				      .msg_control = ctl.b, .msg_controllen = sizeof(ctl.b) };
		struct ivsock_msg_hdr h;
		struct cmsghdr *cm;
		ssize_t n;
		int rc, sock;

		n = recvmsg(c->fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			if (events & (EPOLLHUP | EPOLLERR))
				break;
			return;
		}
		/* Only broker requests carry an fd (the socket they act on):
		 * keep the first one, close everything else, before anything
		 * else (an empty SEQPACKET packet can carry fds too). */
		sock = -1;
		for (cm = n >= 0 ? CMSG_FIRSTHDR(&msg) : NULL; cm; cm = CMSG_NXTHDR(&msg, cm)) {
			if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
				size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);

				for (size_t i = 0; i < k; i++) {
					int f;

					memcpy(&f, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
					if (sock < 0)
						sock = f;
					else
						close(f);
				}
			}
		}
		if (sock >= 0 && (n <= 0 || (msg.msg_flags & MSG_CTRUNC) ||
				  n < (ssize_t)sizeof(struct ivsock_msg_hdr) ||
				  ((struct ivsock_msg_hdr *)buf)->type < IVSOCK_AG_LISTEN)) {
			close(sock);
			sock = -1;
		}
		if (n <= 0)
			break;
		rc = (msg.msg_flags & MSG_TRUNC) ? -EMSGSIZE
						  : ivsock_msg_check(buf, (size_t)n, 0, 0);
		if (rc < 0) {
			log_rl(LOG_WARNING, "pid %d sent a malformed request (%s): "
			       "disconnecting", (int)c->pid, strerror(-rc));
			if (sock >= 0)
				close(sock);
			break;
		}
		memcpy(&h, buf, sizeof(h));
		if (h.type >= IVSOCK_AG_LISTEN && c->allowed) {
			if (broker_handle(a, c, &h, buf + sizeof(h), sock) < 0)
				goto bad;
			continue;
		}
		if (sock >= 0)
			close(sock);
		if (!c->allowed) {
			/* Requests have odd types, replies the next even one;
			 * never answer with type 0 (invalid). */
			agent_reply(c, (h.type & 1) && h.type < 0xffff ? h.type + 1 : h.type,
			      h.seq, -EACCES, NULL, 0, NULL, 0);
			break;
		}
		switch (h.type) {
		case IVSOCK_AG_HELLO:
			if (ivsock_msg_check(buf, (size_t)n, IVSOCK_AG_HELLO,
					     sizeof(struct ivsock_ag_hello)) < 0)
				goto bad;
			do_hello(a, c, h.seq);
			break;
		case IVSOCK_AG_PEER_FD: {
			struct ivsock_ag_peer p;

			if (ivsock_msg_check(buf, (size_t)n, IVSOCK_AG_PEER_FD, sizeof(p)) < 0)
				goto bad;
			memcpy(&p, buf + sizeof(h), sizeof(p));
			do_peer_fd(a, c, h.seq, &p);
			break;
		}
		case IVSOCK_AG_STATUS:
			do_status(a, c, h.seq);
			break;
		default:
			agent_reply(c, h.type, h.seq, -EOPNOTSUPP, NULL, 0, NULL, 0);
			break;
		}
		continue;
bad:
		log_rl(LOG_WARNING, "pid %d sent a short type-%u request: disconnecting",
		       (int)c->pid, h.type);
		break;
	}
	client_drop(a, c, true);
}

void agent_clients_close_all(struct agent *a)
{
	/* The agent stops, its clients may not: their slots stay theirs. */
	while (a->clients)
		client_drop(a, a->clients, false);
}
