// SPDX-License-Identifier: MIT
/*
 * The ivshmem server of one trust domain: listening socket, greeting, peer
 * announcements. Every send is non-blocking; a client that does not read
 * gets a bounded queue and is dropped when it overflows, a client that
 * writes is read and ignored (dropped if it floods), so one bad client never
 * stalls the others.
 */
#include <endian.h>
#include <stdarg.h>
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
#include "fdstore.h"
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

static void fdname(char *buf, size_t n, const struct domain *d, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void fdname(char *buf, size_t n, const struct domain *d, const char *fmt, ...)
{
	va_list ap;
	int k = snprintf(buf, n, "%s.", d->conf.name);

	va_start(ap, fmt);
	if (k > 0 && (size_t)k < n)
		vsnprintf(buf + k, n - (size_t)k, fmt, ap);
	va_end(ap);
}

/* Hand a client's descriptors to the fd store (once its greeting is out:
 * a successor cannot resume a half-sent greeting). */
static void client_store(struct client *c)
{
	struct domain *d = c->dom;
	char name[256];
	uint32_t v;

	if (c->stored || !d->stored || c->doomed)
		return;
	c->stored = true;
	fdname(name, sizeof(name), d, "c%u.e%d.%u.sock", c->peer_id, c->vm, c->vm_gen);
	fdstore_put(name, c->ev.fd);
	for (v = 0; v < c->fds.n; v++) {
		fdname(name, sizeof(name), d, "c%u.v%u", c->peer_id, v);
		fdstore_put(name, c->fds.fd[v]);
	}
	for (v = 0; v < c->dfds.n; v++) {
		fdname(name, sizeof(name), d, "c%u.d%u", c->peer_id, v);
		fdstore_put(name, c->dfds.fd[v]);
	}
}

static void client_unstore(struct domain *d, uint32_t peer, int vm, uint32_t gen,
			   uint32_t vectors)
{
	char name[256];
	uint32_t v;

	fdname(name, sizeof(name), d, "c%u.e%d.%u.sock", peer, vm, gen);
	fdstore_remove(name);
	for (v = 0; v < vectors; v++) {
		fdname(name, sizeof(name), d, "c%u.v%u", peer, v);
		fdstore_remove(name);
		fdname(name, sizeof(name), d, "c%u.d%u", peer, v);
		fdstore_remove(name);
	}
}

/* The client of all domains holding the most queued descriptors. */
static struct client *greediest(void)
{
	struct client *best = NULL, *c;
	struct domain *d;

	for (d = g_daemon->domains; d; d = d->next)
		for (c = d->clients; c; c = c->next)
			if (!c->doomed && (!best || c->qfds > best->qfds))
				best = c;
	return best;
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
	if (fd >= 0) {
		/* Every queued descriptor is a dup we hold: bounded per client
		 * and in all, so clients that do not read cannot take ivsockd
		 * to EMFILE. Over the global budget the client holding most
		 * goes first. */
		if (c->qfds >= CLIENT_QFDS_MAX) {
			client_doom(c, "not reading its socket: queue full");
			return;
		}
		while (g_daemon->queued_fds >= g_daemon->queued_fds_max) {
			struct client *g = greediest();

			if (!g)
				break;
			client_doom(g, "not reading its socket: descriptor budget");
			g_daemon->queued_fds -= g->qfds;   /* freed at reap */
			g->qfds = 0;
			if (g == c)
				return;
		}
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
		c->qfds++;
		g_daemon->queued_fds++;
	}
	c->qlen++;
	client_arm_out(c, true);
}

static void drop_queued(struct client *c, struct outmsg *m)
{
	if (m->fd < 0)
		return;
	close(m->fd);
	m->fd = -1;
	if (c->qfds) {
		c->qfds--;
		g_daemon->queued_fds--;
	}
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
		drop_queued(c, m);
		c->qhead = (c->qhead + 1) % c->qcap;
		c->qlen--;
	}
	if (!c->qlen) {
		client_arm_out(c, false);
		client_store(c);
	}
}

void client_free(struct client *c)
{
	while (c->qlen) {
		drop_queued(c, &c->q[c->qhead]);
		c->qhead = (c->qhead + 1) % c->qcap;
		c->qlen--;
	}
	free(c->q);
	/* Gone for good (not a daemon restart): out of the store too. */
	if (c->stored && !g_daemon->exiting)
		client_unstore(c->dom, c->peer_id, c->vm, c->vm_gen, c->fds.n);
	if (c->bell_ev.fd >= 0)
		ev_del(&c->bell_ev);
	ev_del(&c->ev);
	close(c->ev.fd);
	peer_fds_close(&c->fds);
	peer_fds_close(&c->dfds);
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
	log_warn("domain %s: refusing client pid %d uid %u (%s): %s", d->conf.name,
		 (int)id->pid, (unsigned int)id->uid, id->name, why);
	d->refused++;
	close(sock);
}

static void client_bell_event(struct evsrc *src, uint32_t events)
{
	struct client *c = (struct client *)((char *)src - offsetof(struct client, bell_ev));

	(void)events;
	ivsock_eventfd_drain(src->fd);
	if (!c->doomed)
		mailbox_serve_client(c);
}

/* Link a client in: epoll on its socket and on its private doorbell. */
static int client_attach(struct client *c)
{
	c->ev.fn = client_event;
	c->bell_ev.fd = c->dfds.fd[0];
	c->bell_ev.fn = client_bell_event;
	if (ev_add(&c->ev, EPOLLIN | EPOLLRDHUP) < 0)
		return -errno;
	if (ev_add(&c->bell_ev, EPOLLIN) < 0) {
		int e = -errno;

		ev_del(&c->ev);
		return e;
	}
	return 0;
}

/* Admit one accepted socket: credentials, directory entry, greeting, peers. */
static void admit(struct domain *d, int sock)
{
	struct client_ident id;
	struct client *c, *o;
	uint32_t v;
	int rc;

	if (ident_creds(&id, sock) < 0) {
		memset(&id, 0, sizeof(id));
		snprintf(id.name, sizeof(id.name), "unknown");
		return refuse(d, sock, &id, "no peer credentials");
	}
	/* Admission is by credentials only (the socket's permissions let the
	 * process connect, SO_PEERCRED says who it is). The command line is
	 * read afterwards, for the VM's name, and grants nothing. */
	if (!conf_admits(&d->conf, id.uid, id.gid))
		return refuse(d, sock, &id, "uid/gid not in the domain's allow_users/allow_groups");
	ident_cmdline(&id);
	if (id.qemu && !conf_allowed(&d->conf, id.name))
		return refuse(d, sock, &id, "name not in the domain's allow list");
	c = calloc(1, sizeof(*c));
	if (!c)
		return refuse(d, sock, &id, "out of memory");
	c->ev.fd = sock;
	c->bell_ev.fd = -1;
	c->dom = d;
	c->pid = id.pid;
	c->uid = id.uid;
	c->gid = id.gid;
	c->qemu = id.qemu;
	c->connected_ms = now_ms();
	rc = peer_id_alloc(&d->ids);
	if (rc < 0) {
		free(c);
		return refuse(d, sock, &id, "no free peer id");
	}
	c->peer_id = (uint32_t)rc;
	rc = peer_fds_open(&c->fds, d->conf.vectors);
	if (rc == 0) {
		rc = peer_fds_open(&c->dfds, d->conf.vectors);
		if (rc < 0)
			peer_fds_close(&c->fds);
	}
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
		peer_fds_close(&c->dfds);
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
	if (client_attach(c) < 0) {
		ivsock_dir_remove(&d->rg, (uint32_t)c->vm);
		d->slots[c->vm].state = VMSLOT_FREE;
		d->slots[c->vm].c = NULL;
		peer_id_free(&d->ids, c->peer_id);
		peer_fds_close(&c->fds);
		peer_fds_close(&c->dfds);
		free(c);
		return refuse(d, sock, &id, "epoll");
	}

	client_send(c, IVSOCK_IVSHMEM_PROTOCOL_VERSION, -1);
	client_send(c, c->peer_id, -1);
	client_send(c, -1, d->shm_fd);
	/* The daemon's peer, as this client alone sees it. */
	for (v = 0; v < c->dfds.n; v++)
		client_send(c, d->self_id, c->dfds.fd[v]);
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
	if (!c->qlen)
		client_store(c);
	log_info("domain %s: %s client pid %d uid %u '%s' is peer %u, vm %d",
		 d->conf.name, c->qemu ? "QEMU" : "non-QEMU", (int)c->pid,
		 (unsigned int)c->uid, id.name, c->peer_id, c->vm);
}

/* Take client peer back from the fd store (after a restart): its socket,
 * its eventfds and its private daemon doorbell; its directory entry is
 * still ALIVE in the adopted region. Nothing is sent: QEMU does not know
 * the daemon was gone. @return 0, or <0 when it cannot be resumed (then
 * everything of it is closed and removed from the store, and its QEMU sees
 * the disconnect). */
static int restore_client(struct domain *d, uint32_t peer, uint32_t vm, uint32_t gen)
{
	struct client_ident id;
	struct client *c;
	char name[256];
	uint32_t v;
	int sock;
	const char *why = NULL;

	fdname(name, sizeof(name), d, "c%u.e%u.%u.sock", peer, vm, gen);
	sock = fdstore_take(name);
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(sock);
		client_unstore(d, peer, (int)vm, gen, d->conf.vectors);
		return -ENOMEM;
	}
	c->ev.fd = sock;
	c->bell_ev.fd = -1;
	c->dom = d;
	c->peer_id = peer;
	c->stored = true;
	c->restored = true;
	c->connected_ms = now_ms();
	for (v = 0; v < d->conf.vectors; v++) {
		fdname(name, sizeof(name), d, "c%u.v%u", peer, v);
		c->fds.fd[c->fds.n++] = fdstore_take(name);
		fdname(name, sizeof(name), d, "c%u.d%u", peer, v);
		c->dfds.fd[c->dfds.n++] = fdstore_take(name);
		if (c->fds.fd[v] < 0 || c->dfds.fd[v] < 0)
			why = "an eventfd is missing from the store";
	}
	/* The entry is the one the name (the daemon's own record) says, not
	 * one found by peer ID in shared memory: it must still be ALIVE with
	 * that generation and peer ID. */
	if (!why) {
		struct ivsock_slot_val sv = vm < d->rg.vm_cap ?
			ivsock_slot_get(&d->rg.vms[vm].slot) : (struct ivsock_slot_val){ 0 };

		if (vm >= d->rg.vm_cap || d->slots[vm].state != VMSLOT_FREE ||
		    sv.state != IVSOCK_VM_ALIVE || sv.gen != gen ||
		    __atomic_load_n(&d->rg.vms[vm].peer_id, __ATOMIC_RELAXED) != peer)
			why = "its directory entry is gone or changed";
	}
	if (!why && ident_creds(&id, sock) < 0)
		why = "no peer credentials";
	if (!why && !conf_admits(&d->conf, id.uid, id.gid))
		why = "uid/gid no longer admitted";
	if (!why && peer_id_reserve(&d->ids, peer) < 0)
		why = "peer id taken";
	if (why) {
		log_warn("domain %s: stored client peer %u not resumed: %s", d->conf.name,
			 peer, why);
		client_unstore(d, peer, (int)vm, gen, d->conf.vectors);
		for (v = 0; v < c->fds.n; v++)
			if (c->fds.fd[v] >= 0)
				close(c->fds.fd[v]);
		for (v = 0; v < c->dfds.n; v++)
			if (c->dfds.fd[v] >= 0)
				close(c->dfds.fd[v]);
		close(sock);
		free(c);
		return -ENOENT;
	}
	ident_cmdline(&id);
	c->pid = id.pid;
	c->uid = id.uid;
	c->gid = id.gid;
	c->qemu = id.qemu;
	c->vm = (int)vm;
	c->vm_gen = gen;
	/* A request written before the restart but not answered is served
	 * when its doorbell (kept in the eventfd's counter) is seen. */
	d->slots[vm].mb_seen = ivsock_load_acquire(&d->rg.mailboxes[vm].resp_seq);
	d->slots[vm].state = VMSLOT_LIVE;
	d->slots[vm].c = c;
	d->slots[vm].peer_id = peer;
	if (client_attach(c) < 0) {
		/* The entry stays LIVE until reap disconnects it properly. */
		c->doomed = true;
		c->why = "epoll";
	}
	c->next = d->clients;
	d->clients = c;
	d->nclients++;
	d->restored++;
	log_info("domain %s: resumed %s client pid %d '%s', peer %u, vm %d",
		 d->conf.name, c->qemu ? "QEMU" : "non-QEMU", (int)c->pid, id.name, peer, vm);
	return 0;
}

static void accept_error(struct domain *d, int e)
{
	static uint64_t last_ms;
	static unsigned int suppressed;
	uint64_t now = now_ms();

	if (now - last_ms < 1000) {
		suppressed++;
		return;
	}
	log_warn("domain %s: accept: %s%s (%u similar messages suppressed)", d->conf.name,
		 strerror(e), e == EMFILE || e == ENFILE ?
		 ": connection refused to keep serving the others" : "", suppressed);
	last_ms = now;
	suppressed = 0;
}

void fd_reserve_init(void)
{
	if (g_daemon->reserve_fd < 0)
		g_daemon->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* At EMFILE a level-triggered listener would wake us forever: give up the
 * spare descriptor, accept the connection and close it at once, take the
 * spare back. The client sees EOF; nobody spins. */
int accept_or_shed(int lfd, void (*on_err)(void *, int), void *arg)
{
	for (;;) {
		int s = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (s >= 0)
			return s;
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return -EAGAIN;
		if ((errno == EMFILE || errno == ENFILE) && g_daemon->reserve_fd >= 0) {
			int e = errno;

			close(g_daemon->reserve_fd);
			g_daemon->reserve_fd = -1;
			s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			if (s >= 0)
				close(s);
			fd_reserve_init();
			on_err(arg, e);
			if (s < 0)
				return -EAGAIN;
			continue;
		}
		{
			int e = errno;

			on_err(arg, e);
			/* No spare to shed with: the caller pauses the
			 * listener until the next tick rather than spin. */
			return e == EMFILE || e == ENFILE ? -EMFILE : -EAGAIN;
		}
	}
}

static void listen_err(void *arg, int e)
{
	accept_error(arg, e);
}

static void listen_event(struct evsrc *src, uint32_t events)
{
	struct domain *d = (struct domain *)((char *)src - offsetof(struct domain, listen_ev));

	(void)events;
	for (;;) {
		int s = accept_or_shed(src->fd, listen_err, d);

		if (s == -EMFILE) {
			ev_del(&d->listen_ev);
			d->listen_paused = true;
		}
		if (s < 0)
			return;
		admit(d, s);
	}
}

void domain_tick(struct domain *d, uint64_t now)
{
	struct client *c;

	if (d->listen_paused) {
		fd_reserve_init();
		if (ev_add(&d->listen_ev, EPOLLIN) == 0)
			d->listen_paused = false;
	}

	if (!d->conf.register_ms)
		return;
	for (c = d->clients; c; c = c->next) {
		if (c->doomed || c->qemu || c->registered || c->introduced)
			continue;
		if (now - c->connected_ms >= d->conf.register_ms) {
			log_warn("domain %s: peer %u (pid %d) did not register within %u ms: "
				 "dropping it", d->conf.name, c->peer_id, (int)c->pid,
				 d->conf.register_ms);
			client_doom(c, "did not register in time");
		}
	}
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

/* The stored listener, if it is still a listening socket at our path. */
static int stored_listener(struct domain *d, int fd)
{
	struct sockaddr_un sa;
	socklen_t sl = sizeof(sa);
	int acc = 0;
	socklen_t al = sizeof(acc);

	if (fd < 0)
		return -1;
	memset(&sa, 0, sizeof(sa));
	if (getsockname(fd, (struct sockaddr *)&sa, &sl) < 0 || sa.sun_family != AF_UNIX ||
	    strcmp(sa.sun_path, d->conf.socket) ||
	    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &al) < 0 || !acc) {
		log_warn("domain %s: stored listener is not listening on %s: replaced",
			 d->conf.name, d->conf.socket);
		close(fd);
		return -1;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	return fd;
}

int domain_start(struct domain *d, char *err, size_t errlen)
{
	char name[256];
	int rc, s, sfd = -1, lfd = -1;
	uint32_t peer, pvm, pgen;
	bool store = fdstore_enabled() && fdstore_name_ok(d->conf.name);

	d->shm_fd = -1;
	d->listen_ev.fd = -1;
	peer_ids_init(&d->ids);
	if (fdstore_name_ok(d->conf.name)) {
		fdname(name, sizeof(name), d, "region");
		sfd = fdstore_take(name);
		fdname(name, sizeof(name), d, "listen");
		lfd = fdstore_take(name);
	} else if (fdstore_enabled()) {
		log_warn("domain %s: name unusable in the fd store: this domain will "
			 "not survive a restart", d->conf.name);
	}
	rc = region_open(d, sfd, err, errlen);
	if (rc < 0) {
		if (lfd >= 0)
			close(lfd);
		return rc;
	}
	d->stored = store;
	d->slots = calloc(d->rg.vm_cap, sizeof(*d->slots));
	if (!d->slots || policy_init(d) < 0) {
		rc = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto err_region;
	}
	s = d->adopted ? stored_listener(d, lfd) : (lfd >= 0 ? (close(lfd), -1) : -1);
	if (s < 0)
		s = unix_listen(d->conf.socket, d->conf.socket_mode, "ivsock", err, errlen);
	if (s < 0) {
		rc = s;
		goto err_slots;
	}
	d->listen_ev.fd = s;
	d->listen_ev.fn = listen_event;
	if (ev_add(&d->listen_ev, EPOLLIN) < 0) {
		rc = -errno;
		snprintf(err, errlen, "epoll: %s", strerror(errno));
		goto err_sock;
	}
	if (d->adopted) {
		while (fdstore_next_client(d->conf.name, &peer, &pvm, &pgen) == 0)
			restore_client(d, peer, pvm, pgen);
		/* Entries without a resumed client become orphans. */
		lifecycle_adopt(d);
	}
	if (store) {
		fdname(name, sizeof(name), d, "region");
		fdstore_put(name, d->shm_fd);
		fdname(name, sizeof(name), d, "listen");
		fdstore_put(name, s);
	}
	log_notice("domain %s: listening on %s (region %llu bytes, sealed %s, %u vectors, "
		   "daemon peer %u%s)", d->conf.name, d->conf.socket,
		   (unsigned long long)d->conf.region_size, d->conf.backing,
		   d->conf.vectors, d->self_id, store ? ", in the fd store" : "");
	if (d->adopted)
		log_notice("domain %s: %llu client%s resumed after the restart", d->conf.name,
			   (unsigned long long)d->restored, d->restored == 1 ? "" : "s");
	return 0;
err_sock:
	ev_del(&d->listen_ev);
	close(s);
	unlink(d->conf.socket);
	d->listen_ev.fd = -1;
err_slots:
	policy_fini(d);
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
		close(d->listen_ev.fd);
		/* A stored listener keeps its path for the successor. */
		if (!(d->stored && g_daemon->exiting))
			unlink(d->conf.socket);
	}
	policy_fini(d);
	free(d->slots);
	d->slots = NULL;
	region_close(d, g_daemon->exiting);
}

struct domain *domain_find(const char *name)
{
	struct domain *d;

	for (d = g_daemon->domains; d; d = d->next)
		if (!strcmp(d->conf.name, name))
			return d;
	return NULL;
}
