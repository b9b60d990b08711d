// SPDX-License-Identifier: MIT
/* Connection set-up, through the agent (the broker of the tables: this
 * process only reads them): listen() registers the listener, connect() asks
 * for a channel and its offer keyed by the 4-tuple as the kernel connects,
 * accept() asks for the offer of the accepted socket; each answer
 * is a window onto exactly that connection's block. Plus the connector's
 * lossless fallback and the release of a channel at the process's last
 * close. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ivsock/directory.h"
#include "ivsock/listener.h"
#include "ivsock/offer.h"
#include "sock_int.h"

/* Weak no-op hooks until the multiplexers are linked in. */
__attribute__((weak)) void ivs_mux_fd_closed(int fd) { (void)fd; }
__attribute__((weak)) void ivs_mux_fd_accelerated(int fd) { (void)fd; }
__attribute__((weak)) void ivs_mux_fd_plain(int fd) { (void)fd; }

/* Set while the multiplexers call into us (no hook back into them then). */
__thread int ivs_in_mux;

static bool is_tcp(int fd)
{
	int proto = 0;
	socklen_t l = sizeof(proto);

	return ivs_rc.getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &l) == 0 &&
	       proto == IPPROTO_TCP;
}

static bool is_loopback(const struct ivsock_addr *a)
{
	static const uint8_t lo6[16] = { [15] = 1 };

	if (a->family == IVSOCK_AF_INET)
		return a->bytes[0] == 127;
	return a->family == IVSOCK_AF_INET6 && !memcmp(a->bytes, lo6, 16);
}

/* Map the block an answer describes and build our view of it. The window
 * fd (pci) is kept: our doorbells to the other end go through it. */
int ivs_conn_attach_block(struct ivs_agent *ag, struct ivs_sock *s, const struct ivsock_ag_chan *r,
			  int wfd)
{
	int rc = ivsock_agent_map_block(&ag->conn, r, wfd, &s->map);

	if (rc == 0)
		rc = ivsock_chan_view_block(&s->v, s->map.base, r->ring_size, (int)r->side,
					    r->channel, r->channel_gen);
	if (rc < 0) {
		ivsock_agent_unmap_block(&s->map);
		if (wfd >= 0)
			ivs_real.close(wfd);
		return rc;
	}
	s->v.expect_peer_vm = r->peer_vm < IVSOCK_MAX_VMS ? r->peer_vm + 1 : 0;
	if (r->peer_id <= 65535 && r->peer_vector <= 65535) {
		s->v.peer.peer_id = r->peer_id;
		s->v.peer.vector = r->peer_vector;
	}
	s->winfd = wfd;
	if (wfd >= 0)
		ivs_fdguard_ref(wfd, &s->winfd);
	return 0;
}

/* Let go of the block (our mapping and window): the agent revokes the
 * windows of whatever we leave behind. */
void ivs_conn_detach(struct ivs_sock *s)
{
	ivsock_agent_unmap_block(&s->map);
	if (s->winfd >= 0) {
		ivs_fdguard_close(s->winfd);
		s->winfd = -1;
	}
}

/* The socket to prove ownership with, when we are not the client that
 * opened or accepted the end (a forked or exec'd holder, whose agent
 * connection is its own); else -1 (cheaper: no fd to pass). */
static int proof_fd(struct ivs_sock *s, int fd)
{
	const struct ivsock_region *rg = s->ag->rg;
	uint32_t owner;

	if (s->v.idx >= rg->channel_cap || s->v.side > 1)
		return fd;
	owner = ivsock_ld32(&rg->channels[s->v.idx].end[s->v.side].client);
	return owner == s->ag->me.client ? -1 : fd;
}

/* ---------------- listen ---------------- */

/* Register listening socket fd with the agent (a shim listener entry).
 * Returns rc unchanged: the caller's answer. */
static int register_listener(int fd, int rc)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct ivsock_addr a;
	struct ivs_agent *ag;
	struct ivs_sock *s;
	unsigned flags = 0;
	uint16_t port;
	uint32_t gen;
	int idx, v6only = 0;

	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0 ||
	    (ss.ss_family != AF_INET && ss.ss_family != AF_INET6) || !is_tcp(fd))
		return rc;
	if (ivsock_addr_from_sockaddr(&a, &port, (struct sockaddr *)&ss, sl) < 0)
		return rc;
	if (ss.ss_family == AF_INET6) {
		socklen_t l = sizeof(v6only);

		if (ivs_rc.getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &l) == 0 && v6only)
			flags |= IVSOCK_LISTENER_V6ONLY;
	}
	ag = ivs_agent_get();
	if (!ag) {
		ivs_fallback(IVS_C_FB_NO_AGENT, fd, "listener not registered: no agent", 0);
		return rc;
	}
	(void)a, (void)flags; /* the agent reads the address from the socket */
	{
		uint32_t lidx;

		idx = ivsock_agent_listen(&ag->conn, fd, &lidx, &gen);
		if (idx == 0)
			idx = (int)lidx;
	}
	if (idx < 0) {
		ivs_fallback(IVS_C_FB_NO_LISTENER, fd, "listener not registered by the agent", idx);
		return rc;
	}
	s = ivs_sock_new(IVS_LISTENER, ag);
	if (!s || ivs_fd_install(fd, s) < 0) {
		ivsock_agent_unlisten(&ag->conn, (uint32_t)idx, gen);
		if (s)
			ivs_sock_put(s);
		return rc;
	}
	s->lidx = (uint32_t)idx;
	s->lgen = gen;
	s->kfd = fd;
	ivs_sock_put(s); /* the table holds it */
	ivs_count(IVS_C_LISTEN_REG, 1);
	ivs_debug("fd %d: listener %u registered (port %u)", fd, idx, port);
	return rc;
}

IVS_EXPORT int listen(int fd, int backlog)
{
	int rc;

	ivs_init();
	rc = ivs_rc.listen(fd, backlog);
	if (rc < 0 || ivs_cfg.disabled || ivs_fd_lookup(fd))
		return rc;
	return register_listener(fd, rc);
}

/*
 * A listener that is not registered (its listen() came before the agent,
 * or a process without the shim handed it over: socket activation) is registered at its first accept once
 * the agent answers: its next connections are accelerated, and the ones
 * that came before may be promoted (docs/switch.md, "A peer whose shim
 * came later"). At most one try a second per process.
 */
#define LATE_LISTEN_NS (1000ULL * 1000000)
static _Atomic uint64_t late_listen_next;

static struct ivs_sock *late_listener(int lfd)
{
	uint64_t now = ivs_now_ns(), next = atomic_load(&late_listen_next);

	if (now < next ||
	    !atomic_compare_exchange_strong(&late_listen_next, &next, now + LATE_LISTEN_NS))
		return NULL;
	register_listener(lfd, 0);
	return ivs_fd_lookup(lfd);
}

void ivs_listener_release(struct ivs_sock *s)
{
	/* Shared with a forked process that may still accept: keep it; the
	 * agent drops it with the registering process. */
	if (!s->lshared && atomic_load(&ivs_fork_gen) == s->fork_gen)
		ivsock_agent_unlisten(&s->ag->conn, s->lidx, s->lgen);
}

/* ---------------- connect ---------------- */

/* What can be decided before the kernel connects: a TCP socket, our agent,
 * a VM of the domain with a shimmed listener there. @return the agent (t and
 * *vm filled) or NULL (plain TCP; reason counted). */
static struct ivs_agent *may_offer(int fd, const struct sockaddr *addr, socklen_t len,
				   struct ivsock_tuple *t, int *vm, struct ivs_agent **watch)
{
	struct ivs_agent *ag;

	memset(t, 0, sizeof(*t));
	if (ivsock_addr_from_sockaddr(&t->dst, &t->dport, addr, len) < 0 || !is_tcp(fd)) {
		ivs_fallback(IVS_C_FB_NOT_TCP, fd, "not a TCP/IP socket", 0);
		return NULL;
	}
	if (fd >= (1 << 22)) {
		ivs_fallback(IVS_C_FB_FDMAX, fd, "fd too large for the table", 0);
		return NULL;
	}
	ag = ivs_agent_get();
	if (!ag) {
		ivs_fallback(IVS_C_FB_NO_AGENT, fd, "no agent", 0);
		return NULL;
	}
	*vm = is_loopback(&t->dst) ? ag->me.vm : ivsock_dir_find_addr(ag->rg, &t->dst);
	if (*vm < 0) {
		ivs_fallback(IVS_C_FB_NOT_VM, fd, "destination is not a VM of the domain", 0);
		return NULL;
	}
	if (ivsock_listener_find(ag->rg, (uint32_t)*vm, &t->dst, t->dport) < 0) {
		ivs_fallback(IVS_C_FB_NO_LISTENER, fd, "no shimmed listener there", 0);
		*watch = ag; /* a VM of the domain: its listener may come later */
		return NULL;
	}
	return ag;
}

/* Ask the agent for a channel before the kernel connects: the agent posts a
 * marker (docs/broker.md, "The late offer"), and the offer once we tell it
 * the socket is connecting (ivsock_agent_port). Map the block. @return a
 * socket in OFFERED state (not installed) or NULL (plain TCP; reason
 * counted; the socket untouched). */
static struct ivs_sock *offer(struct ivs_agent *ag, int fd, struct ivsock_tuple *t, int vm,
			      bool *norings)
{
	struct ivsock_ag_chan r;
	struct ivs_sock *s;
	int rc, wfd = -1;

	s = ivs_sock_new(IVS_CONN, ag);
	if (!s)
		return NULL;
	rc = ivsock_agent_open(&ag->conn, fd, &t->dst, t->dport,
			       ivs_cfg.ring_size ? (uint32_t)ivs_cfg.ring_size : IVSOCK_AG_CLASS_DEFAULT,
			       IVSOCK_AG_OPEN_MARK, &r, &wfd);
	if (rc < 0) {
		ivs_sock_put(s);
		/* no rings for now: the connection may get them later */
		*norings = rc == -ENOSPC || rc == -EDQUOT;
		ivs_fallback(rc == -ECONNREFUSED ? IVS_C_FB_NO_LISTENER :
			     rc == -EHOSTUNREACH ? IVS_C_FB_NOT_VM :
			     rc == -ETIMEDOUT ? IVS_C_AGENT_TIMEOUT : IVS_C_FB_NO_RINGS,
			     fd, "the agent gave no channel", rc);
		return NULL;
	}
	rc = ivs_conn_attach_block(ag, s, &r, wfd);
	if (rc < 0) {
		/* the offer is posted: take it back (the acceptor, if it
		 * already holds it, finds it abandoned and stays on TCP) */
		ivsock_agent_abandon(&ag->conn, fd, r.channel, r.channel_gen);
		ivsock_agent_close_end(&ag->conn, -1, r.channel, r.channel_gen,
				       IVSOCK_SIDE_CONNECTOR, false);
		ivs_sock_put(s);
		ivs_fallback(IVS_C_FB_OFFER, fd, "window", rc);
		return NULL;
	}
	s->dst_vm = (uint8_t)vm;
	s->dst = t->dst;
	s->dport = t->dport;
	atomic_store(&s->state, IVS_ST_OFFERED);
	s->offered_ns = ivs_now_ns();
	return s;
}

static void offer_withdraw(struct ivs_sock *s, int fd)
{
	ivsock_agent_abandon(&s->ag->conn, fd, s->v.idx, s->v.gen);
	ivs_conn_detach(s);
	ivsock_agent_close_end(&s->ag->conn, -1, s->v.idx, s->v.gen, IVSOCK_SIDE_CONNECTOR, false);
}

/* The second, blocking connect() of a socket our non-blocking one started:
 * EALREADY (SO_SNDTIMEO ran out) reads as a single connect()'s answer. */
static int kernel_connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	int rc = ivs_rc.connect(fd, addr, len);

	if (rc < 0 && errno == EALREADY)
		errno = EINPROGRESS;
	return rc;
}

/*
 * OPEN first (a channel, and a marker that tells the acceptor's agent an
 * offer is coming), then the program's own connect(), non-blocking (its
 * seccomp filter and security context apply, the kernel picks the source
 * port the way it always does, with no bind of ours), then PORT (the agent
 * posts the offer under the real 4-tuple). A blocking socket finishes in a
 * second, blocking connect(), which the kernel answers as it would have
 * answered one call: 0 once established, the error otherwise, EINTR on a
 * signal (restarted under SA_RESTART), EALREADY once SO_SNDTIMEO ran out
 * (reported as EINPROGRESS) (docs/shim.md, "connect").
 */
IVS_EXPORT int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	struct ivsock_tuple t;
	struct ivs_agent *ag, *watch = NULL;
	struct ivs_sock *s;
	int rc, err, fl, vm = -1;
	bool nonblock, norings = false;

	ivs_init();
	if (ivs_cfg.disabled || !addr || len < sizeof(sa_family_t) ||
	    (addr->sa_family != AF_INET && addr->sa_family != AF_INET6) || ivs_fd_lookup(fd))
		return ivs_rc.connect(fd, addr, len);
	ag = may_offer(fd, addr, len, &t, &vm, &watch);
	fl = ag ? ivs_rc.fcntl(fd, F_GETFL) : -1;
	s = fl >= 0 ? offer(ag, fd, &t, vm, &norings) : NULL;
	if (!s) {
		rc = ivs_rc.connect(fd, addr, len);
		err = errno;
		if (norings && (rc == 0 || err == EINPROGRESS || err == EINTR))
			ivs_promo_connector(ag, fd, &t, vm); /* TCP now, a ring later */
		else if (watch && (rc == 0 || err == EINPROGRESS || err == EINTR))
			ivs_promo_watch(watch, fd, &t, vm); /* a listener may come later */
		errno = err;
		return rc;
	}
	nonblock = fl & O_NONBLOCK;
	if (!nonblock && ivs_rc.fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		offer_withdraw(s, fd);
		ivs_sock_put(s);
		return ivs_rc.connect(fd, addr, len);
	}
	rc = ivs_rc.connect(fd, addr, len);
	err = errno;
	if (!nonblock)
		ivs_rc.fcntl(fd, F_SETFL, fl);
	if ((rc == 0 || err == EINPROGRESS) &&
	    ivsock_agent_port(&ag->conn, fd, s->v.idx, s->v.gen) < 0) {
		/* the offer will never come: plain TCP, the kernel connecting */
		offer_withdraw(s, fd);
		ivs_sock_put(s);
		ivs_fallback(IVS_C_FB_OFFER, fd, "PORT not sent", 0);
		if (rc < 0 && !nonblock)
			return kernel_connect(fd, addr, len);
		errno = err;
		return rc;
	}
	if (rc < 0 && err == EINPROGRESS && !nonblock) {
		rc = kernel_connect(fd, addr, len);
		err = errno;
	}
	/* EINTR and EINPROGRESS: the kernel goes on connecting (a later
	 * connect() reports EALREADY/EISCONN), and the acceptor may already
	 * hold our offer, so keep it. */
	if (rc < 0 && err != EINPROGRESS && err != EINTR) {
		offer_withdraw(s, fd);
		ivs_sock_put(s);
		ivs_fallback(IVS_C_FB_CONNECT, fd, "connect failed", -err);
		errno = err;
		return rc;
	}
	atomic_store(&s->nonblock, nonblock);
	s->kfd = fd;
	if (ivs_fd_install(fd, s) < 0) {
		offer_withdraw(s, fd);
		ivs_sock_put(s);
		errno = err;
		return rc;
	}
	ivs_sock_put(s);
	ivs_count(IVS_C_ACCEL_CONNECT, 1);
	ivs_debug("fd %d: offered channel %u", fd, s->v.idx);
	ivs_mux_fd_accelerated(fd);
	errno = rc < 0 ? err : 0;
	return rc;
}

/* ---------------- accept ---------------- */

static void try_attach(int lfd, int nfd, int flags)
{
	struct ivs_sock *ls = ivs_fd_lookup(lfd), *s;
	struct ivsock_ag_chan r;
	struct ivs_agent *ag;
	int rc, wfd = -1;

	if (!ls)
		ls = late_listener(lfd);
	if (!ls || ls->kind != IVS_LISTENER)
		return;
	ag = ivs_agent_get();
	if (!ag) {
		/* A forked worker that cannot reach the agent: the connector
		 * falls back after its attach timeout. */
		ivs_fallback(IVS_C_FB_NO_AGENT, nfd, "acceptor has no agent", 0);
		return;
	}
	rc = ivsock_agent_accept(&ag->conn, nfd, &r, &wfd);
	if (rc < 0) {
		ivs_fallback(rc == -ENOENT ? IVS_C_FB_NO_OFFER : IVS_C_FB_ACCEPT, nfd,
			     rc == -ENOENT ? "no offer for this connection" : "attach", rc);
		/* a connector that found no rings may offer later */
		if (rc == -ENOENT)
			ivs_promo_acceptor(ag, nfd);
		return;
	}
	/* IVSOCK_TEST_PAUSE_ACCEPTING=1 (tests only): stop here, attached by
	 * the agent but not mapped yet: the connector must not fall back
	 * (docs/shim.md: the paused acceptor). */
	if (__builtin_expect(getenv("IVSOCK_TEST_PAUSE_ACCEPTING") != NULL, 0))
		raise(SIGSTOP);
	s = ivs_sock_new(IVS_CONN, ag);
	if (!s || ivs_conn_attach_block(ag, s, &r, wfd) < 0) {
		if (!s && wfd >= 0)
			ivs_real.close(wfd);
		ivsock_agent_close_end(&ag->conn, -1, r.channel, r.channel_gen,
				       IVSOCK_SIDE_ACCEPTOR, true);
		if (s)
			ivs_sock_put(s);
		return;
	}
	s->kfd = nfd;
	atomic_store(&s->state, IVS_ST_CONNECTED);
	atomic_store(&s->nonblock, (flags & SOCK_NONBLOCK) != 0);
	if (ivs_fd_install(nfd, s) < 0) {
		ivs_conn_detach(s);
		ivsock_agent_close_end(&ag->conn, -1, r.channel, r.channel_gen,
				       IVSOCK_SIDE_ACCEPTOR, true);
		ivs_sock_put(s);
		return;
	}
	ivs_sock_put(s);
	ivs_count(IVS_C_ACCEL_ACCEPT, 1);
	ivs_debug("fd %d: attached channel %u", nfd, r.channel);
	/* the agent rang the connector already */
	ivs_mux_fd_accelerated(nfd);
}

IVS_EXPORT int accept4(int fd, struct sockaddr *addr, socklen_t *alen, int flags)
{
	int nfd, err;

	ivs_init();
	nfd = ivs_rc.accept4(fd, addr, alen, flags);
	if (nfd < 0 || ivs_cfg.disabled)
		return nfd;
	err = errno;
	try_attach(fd, nfd, flags);
	errno = err;
	return nfd;
}

IVS_EXPORT int accept(int fd, struct sockaddr *addr, socklen_t *alen)
{
	return accept4(fd, addr, alen, 0);
}

/* ---------------- state changes ---------------- */

void ivs_sock_refresh(struct ivs_sock *s)
{
	unsigned gen = atomic_load_explicit(&ivs_fork_gen, memory_order_relaxed);
	struct ivsock_end_ctl *e;
	struct ivs_agent *ag;

	if (__builtin_expect(s->fork_gen == gen && !s->shared, 1))
		return;
	/* Sole holder again: one last re-read and we own the views for good
	 * (the count only grows through our own fork()). */
	if (s->shared && s->fork_gen == gen && atomic_load(&s->v.my_ctl->holders) <= 1)
		s->shared = false;
	if (s->fork_gen != gen) {
		ag = ivs_agent_get();
		if (ag)
			s->ag = ag;
		s->fork_gen = gen;
		s->adopted = false;
	}
	/* Another process may have used the socket since (one at a time):
	 * our private indices are re-read from shared memory. */
	/* Indices the other side corrupted: the ring stays broken (-EPROTO
	 * from every operation, reported as a reset) instead of trusted. */
	if (ivsock_ring_attach(&s->v.tx, s->v.tx.p, s->v.tx.c, s->v.tx.data, s->v.tx.size,
			       IVSOCK_RING_PRODUCER) < 0)
		s->v.tx.broken = -EPROTO;
	if (ivsock_ring_attach(&s->v.rx, s->v.rx.p, s->v.rx.c, s->v.rx.data, s->v.rx.size,
			       IVSOCK_RING_CONSUMER) < 0)
		s->v.rx.broken = -EPROTO;
	/*
	 * Wake-ups for this end now go to this process. Ownership (the client
	 * field, which the agent resets the end by when that client goes away)
	 * stays with the process that created the end: its agent socket is
	 * inherited by every forked holder, so the client lives as long as any
	 * of them (even one that leaves with _exit()).
	 */
	e = s->v.my_ctl;
	if (s->ag->conn.db && (e->vector != s->ag->me.vector || e->peer_id != s->ag->me.peer_id)) {
		if (!s->adopted) {
			s->prev_peer = e->peer_id;
			s->prev_vector = e->vector;
			s->adopted = true;
		}
		e->peer_id = s->ag->me.peer_id;
		e->vector = s->ag->me.vector;
		ivsock_smp_mb();
	}
}

/* This process lets go of a shared end another process still holds: point
 * its wake-ups back to whoever had them before we took them. */
static void unadopt(struct ivs_sock *s)
{
	struct ivsock_end_ctl *e = s->v.my_ctl;

	if (!s->adopted || e->vector != s->ag->me.vector || e->peer_id != s->ag->me.peer_id)
		return;
	e->peer_id = s->prev_peer;
	e->vector = s->prev_vector;
	s->adopted = false;
	ivsock_smp_mb();
}

int ivs_conn_check_attached(struct ivs_sock *s)
{
	int rc;

	if (atomic_load(&s->state) != IVS_ST_OFFERED)
		return 0;
	rc = ivsock_chan_learn_peer(s->ag->rg, &s->v);
	if (rc == 0) {
		atomic_store(&s->state, IVS_ST_CONNECTED);
		atomic_fetch_add(&s->event_seq, 1);
		/* shutdown(SHUT_WR) while OFFERED kept the kernel FIN back (a
		 * fallback might still have had bytes to send): send it now */
		if (s->shut_wr && s->kfd >= 0 && !atomic_exchange(&s->kshut_done, 1))
			ivs_rc.shutdown(s->kfd, SHUT_WR);
		return 0;
	}
	return rc;
}

static int send_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = ivs_rc.send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				struct pollfd pf = { .fd = fd, .events = POLLOUT };

				ivs_real.poll(&pf, 1, 1000);
				continue;
			}
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int ivs_conn_fallback(struct ivs_sock *s, int fd, enum ivs_counter why)
{
	struct ivsock_region *rg = s->ag->rg;
	uint8_t *buf = NULL;
	ssize_t n;
	int rc = 0, st;

	pthread_mutex_lock(&s->rx_lock);
	pthread_mutex_lock(&s->tx_lock);
	if (atomic_load(&s->state) != IVS_ST_OFFERED)
		goto out;
	/* The race with the acceptor is decided by one CAS, which the agent
	 * does for us: 0 means ABANDONED (or already so, after a lost reply). */
	rc = ivsock_agent_abandon(&s->ag->conn, fd, s->v.idx, s->v.gen);
	st = ivsock_chan_state(rg, s->v.idx, s->v.gen);
	if (rc < 0 && st != IVSOCK_CHAN_ABANDONED) {
		if (rc != -ESTALE) {
			/* The agent did not answer: nothing was decided. Keep
			 * the rings (the acceptor may still attach) and ask
			 * again next time. */
			rc = 2;
			goto out;
		}
		if (ivs_conn_check_attached(s) == 0) {
			rc = 1; /* the acceptor attached first: rings it is */
			goto out;
		}
		/*
		 * ACCEPTING: the acceptor won the offer (its first CAS) and is
		 * writing its end; it may be paused right there (vCPU steal,
		 * SIGSTOP, ptrace) but it will read our ring and answer into
		 * its own. The rings are the stream: never fall back (no more
		 * timeouts), unless its kernel socket hung up, which only its
		 * death can do before accept() returned.
		 */
		if (st == IVSOCK_CHAN_ACCEPTING && why != IVS_C_FB_PEER_CLOSED) {
			if (!atomic_exchange(&s->acceptor_won, true))
				ivs_debug("fd %d: acceptor is attaching: no fallback", fd);
			rc = 2;
			goto out;
		}
		/* The channel is gone under us (freed or reused), or its
		 * acceptor died while attaching: nothing can flow on it any
		 * more; the kernel socket tells what remains. */
		ivs_conn_detach(s);
		ivsock_agent_close_end(&s->ag->conn, proof_fd(s, fd), s->v.idx, s->v.gen,
				       IVSOCK_SIDE_CONNECTOR, false);
		atomic_store(&s->closed, 1);
		atomic_store(&s->state, IVS_ST_PLAIN);
		atomic_fetch_add(&s->event_seq, 1);
		ivs_fallback(IVS_C_FB_VANISHED, fd, "channel vanished while offered", -ESTALE);
		rc = -ESTALE;
		goto out;
	}
	rc = 0;
	/* ours: take back what the acceptor never read (our own ring, in the
	 * half of the block we write), then let the agent free it */
	buf = malloc(s->v.tx.size);
	n = buf ? ivsock_ring_take_back(&s->v.tx, buf, s->v.tx.size) : -ENOMEM;
	ivs_conn_detach(s);
	ivsock_agent_close_end(&s->ag->conn, proof_fd(s, fd), s->v.idx, s->v.gen,
			       IVSOCK_SIDE_CONNECTOR, false);
	atomic_store(&s->closed, 1);
	atomic_store(&s->state, IVS_ST_PLAIN);
	atomic_fetch_add(&s->event_seq, 1);
	if (n > 0) {
		ivs_count(IVS_C_FALLBACK_BYTES, (uint64_t)n);
		rc = send_all(fd, buf, (size_t)n);
	} else if (n < 0) {
		rc = (int)n;
	}
	if (s->shut_wr)
		ivs_rc.shutdown(fd, SHUT_WR);
	ivs_fallback(why, fd, "connector fell back to TCP", rc);
out:
	pthread_mutex_unlock(&s->tx_lock);
	pthread_mutex_unlock(&s->rx_lock);
	free(buf);
	if (atomic_load(&s->state) == IVS_ST_PLAIN && !ivs_in_mux)
		ivs_mux_fd_plain(fd);
	return rc;
}

void ivs_conn_flush_counts(struct ivs_sock *s, bool force)
{
	if (force || s->tx_pending + s->rx_pending >= (1U << 20)) {
		if (s->tx_pending || s->rx_pending)
			ivsock_chan_count(NULL, &s->v, s->tx_pending, s->rx_pending);
		s->tx_pending = s->rx_pending = 0;
	}
}

void ivs_conn_release(struct ivs_sock *s, int fd)
{
	struct ivsock_end_ctl *e;
	bool reset;
	int st;

	if (s->kind == IVS_LISTENER) {
		ivs_listener_release(s);
		return;
	}
	st = atomic_load(&s->state);
	if (st == IVS_ST_PLAIN) {
		if (s->promo_ok || s->promo_offer || s->promo_taken)
			ivs_promo_release(s, fd);
		return;
	}
	if (atomic_exchange(&s->closed, 1))
		return;
	ivs_sock_refresh(s);
	if (st == IVS_ST_OFFERED && ivs_conn_check_attached(s) != 0) {
		int rc;

		atomic_store(&s->closed, 0);
		/* 2: the acceptor is attaching; close our end of the rings as
		 * a connected socket does (it reads what we wrote, then EOF) */
		rc = ivs_conn_fallback(s, fd, IVS_C_FB_CLOSED);
		if (rc != 1 && rc != 2)
			return;
		atomic_store(&s->closed, 1);
	}
	pthread_mutex_lock(&s->tx_lock);
	ivs_conn_flush_counts(s, true);
	pthread_mutex_unlock(&s->tx_lock);
	e = s->v.my_ctl;
	if (atomic_load(&e->holders) > 1)
		unadopt(s);
	if (atomic_fetch_sub(&e->holders, 1) > 1) {
		/* another process still holds this end: our mapping goes,
		 * the end stays */
		ivs_conn_detach(s);
		return;
	}
	/* Closing with bytes unread is an abort in TCP (RST): same here. Our
	 * head from the private view; a corrupt tail counts as unread. */
	reset = ivsock_ring_snap_readable(&s->v.rx) != 0;
	/* our part, in our half of the block; then the other end hears it,
	 * then the agent releases the end (and revokes what we mapped) */
	ivsock_chan_end_close_rings(&s->v, reset);
	ivs_ring_peer(s);
	ivs_conn_detach(s);
	ivsock_agent_close_end(&s->ag->conn, proof_fd(s, fd), s->v.idx, s->v.gen, s->v.side,
			       reset);
}

void ivs_conn_release_switched(struct ivs_sock *s, int fd)
{
	/* Both directions are on TCP: nothing flows on the rings any more.
	 * No ring end of stream of ours (the peer reads its rx up to our
	 * tx_switch, then TCP); the agent releases our end (the last of the
	 * two frees the block). Called with rx_lock and tx_lock held. */
	ivs_conn_flush_counts(s, true);
	s->ring_tx_done += ivsock_load_relaxed(&s->v.my_ctl->tx_bytes);
	s->ring_rx_done += ivsock_load_relaxed(&s->v.my_ctl->rx_bytes);
	atomic_store(&s->let_go, 1);
	atomic_fetch_sub(&s->v.my_ctl->holders, 1);
	ivs_conn_detach(s);
	ivsock_agent_close_end(&s->ag->conn, proof_fd(s, fd), s->v.idx, s->v.gen, s->v.side,
			       false);
	atomic_store(&s->closed, 1);
	atomic_store(&s->state, IVS_ST_PLAIN);
	atomic_fetch_add(&s->event_seq, 1);
	ivs_promo_after_switch(s, fd);
}
