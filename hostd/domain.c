// SPDX-License-Identifier: MIT
/*
 * The ivshmem server of one trust domain: listening socket, greeting, peer
 * announcements. Every send is non-blocking; a client that does not read
 * gets a bounded queue and is dropped when it overflows, a client that
 * writes is read and ignored (dropped if it floods), so one bad client never
 * stalls the others.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "ivsock/directory.h"
#include "ivsock/doorbell.h"
#include "ivsock/ivshmem_proto.h"
#include "identify.h"
#include "ivsockd.h"
#include "log.h"

/* One message, non-blocking. @return 1 sent, 0 would block, -errno. */
static int send_one(int sock, int64_t value, int fd)
{
	uint64_t le = htole64((uint64_t)value);
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct iovec iov = { &le, sizeof(le) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	if (fd >= 0) {
		struct cmsghdr *c;

		memset(&ctl, 0, sizeof(ctl));
		msg.msg_control = ctl.buf;
		msg.msg_controllen = sizeof(ctl.buf);
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	do
		n = sendmsg(sock, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
	/* An 8-byte message goes in one skb: a short write means trouble. */
	return n == (ssize_t)sizeof(le) ? 1 : -EPROTO;
}

static void client_doom(struct client *c, const char *why)
{
	if (!c->doomed)
		c->why = why;
	c->doomed = true;
}

static void client_arm_out(struct client *c, bool on)
{
	if (c->out_armed == on)
		return;
	c->out_armed = on;
	ev_mod(&c->ev, EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0));
}

void client_send(struct client *c, int64_t value, int fd)
{
	struct outmsg *m;
	int rc;

	if (c->doomed)
		return;
	if (c->qlen == 0) {
		rc = send_one(c->ev.fd, value, fd);
		if (rc == 1)
			return;
		if (rc < 0) {
			client_doom(c, rc == -EPIPE || rc == -ECONNRESET ? "disconnected" : "send error");
			return;
		}
	}
	if (c->qlen == CLIENT_QUEUE_MAX) {
		client_doom(c, "not reading its socket: queue full");
		return;
	}
	if (c->qlen == c->qcap) {
		uint32_t ncap = c->qcap ? c->qcap * 2 : 64, i;
		struct outmsg *nq = calloc(ncap, sizeof(*nq));

		if (!nq) {
			client_doom(c, "out of memory");
			return;
		}
		for (i = 0; i < c->qlen; i++)
			nq[i] = c->q[(c->qhead + i) % c->qcap];
		free(c->q);
		c->q = nq;
		c->qcap = ncap;
		c->qhead = 0;
	}
	m = &c->q[(c->qhead + c->qlen) % c->qcap];
	m->value = value;
	m->fd = -1;
	if (fd >= 0) {
		m->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
		if (m->fd < 0) {
			client_doom(c, "cannot duplicate an eventfd");
			return;
		}
	}
	c->qlen++;
	client_arm_out(c, true);
}

static void client_flush(struct client *c)
{
	while (c->qlen && !c->doomed) {
		struct outmsg *m = &c->q[c->qhead];
		int rc = send_one(c->ev.fd, m->value, m->fd);

		if (rc == 0)
			return;
		if (rc < 0) {
			client_doom(c, rc == -EPIPE || rc == -ECONNRESET ? "disconnected" : "send error");
			return;
		}
		if (m->fd >= 0)
			close(m->fd);
		c->qhead = (c->qhead + 1) % c->qcap;
		c->qlen--;
	}
	if (!c->qlen)
		client_arm_out(c, false);
}

void client_free(struct client *c)
{
	while (c->qlen) {
		if (c->q[c->qhead].fd >= 0)
			close(c->q[c->qhead].fd);
		c->qhead = (c->qhead + 1) % c->qcap;
		c->qlen--;
	}
	free(c->q);
	ev_del(&c->ev);
	close(c->ev.fd);
	peer_fds_close(&c->fds);
	free(c);
}

static void client_event(struct evsrc *src, uint32_t events)
{
	struct client *c = (struct client *)src;
	char buf[4096];

	if (events & EPOLLOUT)
		client_flush(c);
	if (events & EPOLLIN) {
		for (;;) {
			ssize_t n = recv(c->ev.fd, buf, sizeof(buf), MSG_DONTWAIT);

			if (n > 0) {
				c->rx_discarded += (uint64_t)n;
				if (c->rx_discarded > CLIENT_RX_MAX) {
					client_doom(c, "sends data on a one-way protocol");
					return;
				}
				continue;
			}
			if (n == 0) {
				client_doom(c, "disconnected");
				return;
			}
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				client_doom(c, errno == ECONNRESET ? "disconnected" : "receive error");
			break;
		}
	}
	if (events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP))
		client_doom(c, "disconnected");
}

struct client *domain_client_by_peer(struct domain *d, uint32_t peer_id)
{
	struct client *c;

	for (c = d->clients; c; c = c->next)
		if (c->peer_id == peer_id && !c->doomed)
			return c;
	return NULL;
}

int domain_ring(struct domain *d, uint32_t peer_id, uint32_t vector)
{
	struct client *c = domain_client_by_peer(d, peer_id);

	if (!c || vector >= c->fds.n)
		return -ENOENT;
	return ivsock_eventfd_signal(c->fds.fd[vector]);
}

void domain_ring_cb(void *arg, uint32_t peer_id, uint32_t vector)
{
	domain_ring(arg, peer_id, vector);
}

static void refuse(struct domain *d, int sock, const struct client_ident *id, const char *why)
{
	log_warn("domain %s: refusing client pid %d (%s): %s", d->conf.name,
		 (int)id->pid, id->name, why);
	d->refused++;
	close(sock);
}

/* Admit one accepted socket: identify, directory entry, greeting, peers. */
static void admit(struct domain *d, int sock)
{
	struct client_ident id;
	struct client *c, *o;
	uint32_t v;
	int rc;

	if (ident_client(&id, sock) < 0) {
		memset(&id, 0, sizeof(id));
		snprintf(id.name, sizeof(id.name), "unknown");
	}
	if (id.qemu && !conf_allowed(&d->conf, id.name))
		return refuse(d, sock, &id, "name not in the domain's allow list");
	c = calloc(1, sizeof(*c));
	if (!c)
		return refuse(d, sock, &id, "out of memory");
	c->ev.fd = sock;
	c->ev.fn = client_event;
	c->dom = d;
	c->pid = id.pid;
	c->qemu = id.qemu;
	c->connected_ms = now_ms();
	rc = peer_id_alloc(&d->ids);
	if (rc < 0) {
		free(c);
		return refuse(d, sock, &id, "no free peer id");
	}
	c->peer_id = (uint32_t)rc;
	rc = peer_fds_open(&c->fds, d->conf.vectors);
	if (rc < 0) {
		peer_id_free(&d->ids, c->peer_id);
		free(c);
		return refuse(d, sock, &id, strerror(-rc));
	}
	/* The directory entry exists before the greeting: the agent looks
	 * itself up by peer id as soon as it has the region. */
	rc = ivsock_dir_add(&d->rg, c->peer_id, d->conf.vectors, id.name,
			    id.has_uuid ? id.uuid : NULL);
	if (rc < 0) {
		peer_fds_close(&c->fds);
		peer_id_free(&d->ids, c->peer_id);
		free(c);
		return refuse(d, sock, &id, rc == -ENOSPC ? "directory full (max_vms)"
							 : "directory error");
	}
	c->vm = rc;
	c->vm_gen = ivsock_slot_get(&d->rg.vms[rc].slot).gen;
	mailbox_reset(d, c->vm);
	d->slots[c->vm].state = VMSLOT_LIVE;
	d->slots[c->vm].c = c;
	d->slots[c->vm].peer_id = c->peer_id;
	if (ev_add(&c->ev, EPOLLIN | EPOLLRDHUP) < 0) {
		ivsock_dir_remove(&d->rg, (uint32_t)c->vm);
		d->slots[c->vm].state = VMSLOT_FREE;
		d->slots[c->vm].c = NULL;
		peer_id_free(&d->ids, c->peer_id);
		c->ev.fd = -1;
		peer_fds_close(&c->fds);
		free(c);
		return refuse(d, sock, &id, "epoll");
	}

	client_send(c, IVSOCK_IVSHMEM_PROTOCOL_VERSION, -1);
	client_send(c, c->peer_id, -1);
	client_send(c, -1, d->shm_fd);
	for (v = 0; v < d->self_fds.n; v++)
		client_send(c, d->self_id, d->self_fds.fd[v]);
	for (o = d->clients; o; o = o->next) {
		if (o->doomed)
			continue;
		for (v = 0; v < o->fds.n; v++)
			client_send(c, o->peer_id, o->fds.fd[v]);
		for (v = 0; v < c->fds.n; v++)
			client_send(o, c->peer_id, c->fds.fd[v]);
	}
	for (v = 0; v < c->fds.n; v++)
		client_send(c, c->peer_id, c->fds.fd[v]);
	c->next = d->clients;
	d->clients = c;
	d->nclients++;
	d->accepted++;
	log_info("domain %s: %s client pid %d '%s' is peer %u, vm %d",
		 d->conf.name, c->qemu ? "QEMU" : "non-QEMU", (int)c->pid, id.name,
		 c->peer_id, c->vm);
}

static void listen_event(struct evsrc *src, uint32_t events)
{
	struct domain *d = (struct domain *)((char *)src - offsetof(struct domain, listen_ev));

	(void)events;
	for (;;) {
		int s = accept4(src->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (s < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				log_warn("domain %s: accept: %s", d->conf.name, strerror(errno));
			return;
		}
		admit(d, s);
	}
}

static void bell_event(struct evsrc *src, uint32_t events)
{
	struct domain *d = (struct domain *)((char *)src - offsetof(struct domain, bell_ev));

	(void)events;
	ivsock_eventfd_drain(src->fd);
	mailbox_scan(d);
}

/* Bind a UNIX socket at path, refusing if someone is listening there. */
int unix_listen(const char *path, unsigned int mode, const char *group,
		char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char dir[sizeof(sa.sun_path)], *slash;
	struct group *gr;
	int s, probe;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "socket path too long: %s", path);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	strcpy(dir, path);
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		mkdir(dir, 0755);
	}
	probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		close(probe);
		snprintf(err, errlen, "%s is already served by another process", path);
		return -EADDRINUSE;
	}
	if (probe >= 0)
		close(probe);
	unlink(path);
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(s, 128) < 0) {
		int e = errno;

		snprintf(err, errlen, "listen on %s: %s", path, strerror(e));
		if (s >= 0)
			close(s);
		return -e;
	}
	chmod(path, mode);
	if (group && (gr = getgrnam(group)) != NULL && chown(path, 0, gr->gr_gid) < 0)
		log_warn("chown %s to group %s: %s", path, group, strerror(errno));
	return s;
}

int domain_start(struct domain *d, char *err, size_t errlen)
{
	int rc, s;

	d->shm_fd = -1;
	d->listen_ev.fd = -1;
	d->bell_ev.fd = -1;
	peer_ids_init(&d->ids);
	rc = region_open(d, err, errlen);
	if (rc < 0)
		return rc;
	d->slots = calloc(d->rg.vm_cap, sizeof(*d->slots));
	if (!d->slots) {
		rc = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto err_region;
	}
	rc = peer_fds_open(&d->self_fds, d->conf.vectors);
	if (rc < 0) {
		snprintf(err, errlen, "eventfd: %s", strerror(-rc));
		goto err_slots;
	}
	if (d->adopted)
		lifecycle_adopt(d);
	s = unix_listen(d->conf.socket, d->conf.socket_mode, "ivsock", err, errlen);
	if (s < 0) {
		rc = s;
		goto err_fds;
	}
	d->listen_ev.fd = s;
	d->listen_ev.fn = listen_event;
	d->bell_ev.fd = d->self_fds.fd[0];
	d->bell_ev.fn = bell_event;
	if (ev_add(&d->listen_ev, EPOLLIN) < 0 || ev_add(&d->bell_ev, EPOLLIN) < 0) {
		rc = -errno;
		snprintf(err, errlen, "epoll: %s", strerror(errno));
		goto err_sock;
	}
	log_notice("domain %s: listening on %s (region %llu bytes, %s, %u vectors, "
		   "daemon peer %u)", d->conf.name, d->conf.socket,
		   (unsigned long long)d->conf.region_size, d->conf.backing,
		   d->conf.vectors, d->self_id);
	return 0;
err_sock:
	ev_del(&d->listen_ev);
	close(s);
	unlink(d->conf.socket);
	d->listen_ev.fd = -1;
err_fds:
	peer_fds_close(&d->self_fds);
err_slots:
	free(d->slots);
	d->slots = NULL;
err_region:
	region_close(d, false);
	return rc;
}

void domain_stop(struct domain *d)
{
	struct client *c;

	while ((c = d->clients)) {
		d->clients = c->next;
		client_free(c);
	}
	if (d->listen_ev.fd >= 0) {
		ev_del(&d->listen_ev);
		ev_del(&d->bell_ev);
		close(d->listen_ev.fd);
		unlink(d->conf.socket);
	}
	peer_fds_close(&d->self_fds);
	free(d->slots);
	d->slots = NULL;
	region_close(d, true);
}

struct domain *domain_find(const char *name)
{
	struct domain *d;

	for (d = g_daemon->domains; d; d = d->next)
		if (!strcmp(d->conf.name, name))
			return d;
	return NULL;
}
