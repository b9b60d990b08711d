// SPDX-License-Identifier: MIT
/*
 * TCP -> ring (docs/switch.md, "TCP -> ring"): a connection that is on TCP
 * although both ends run the shim (the connector found no free rings) gets
 * a channel later, without losing, duplicating or reordering a byte.
 *
 * Who: the connector asks (an ordinary OPEN of its established socket, at
 * most once per back-off period); the acceptor looks for that offer in the
 * offer table (read-only, no syscall) on its own calls and takes it (an
 * ordinary ACCEPT of its established socket). Each end then becomes
 * CONNECTED with both directions still on TCP (ptx, prx) and says so in its
 * ctl words (rx_ready); an end moves its tx to the ring only once the
 * other end's rx_ready is set: from then on nothing of the other end waits
 * in the kernel for our bytes. Its tx_start tells at which byte of the TCP
 * stream the ring begins, from the kernel's own counters; the reader reads
 * TCP up to there, then the ring.
 *
 * The hard part is a call already inside the kernel on the socket (a
 * blocked recv or poll in another thread): it would never see ring bytes.
 * While a socket may be promoted, every call of ours that enters the kernel
 * on it counts itself in kbusy (ivs_io_get / ivs_promo_leave, and the poll
 * engine); a state change first raises promo_busy, then looks at kbusy, and
 * happens only at 0 (a call first raises kbusy, then looks at promo_busy:
 * one of the two sees the other).
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stddef.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <linux/sockios.h>
#include <linux/tcp.h>

#include "ivsock/directory.h"
#include "ivsock/listener.h"
#include "ivsock/offer.h"
#include "sock_int.h"

/* tcpi_state values (the kernel's TCP states; <netinet/tcp.h> has them but
 * not the tcp_info of <linux/tcp.h> with its byte counters) */
enum { KS_ESTABLISHED = 1, KS_TIME_WAIT = 6, KS_CLOSE = 7, KS_CLOSE_WAIT = 8,
       KS_LAST_ACK = 9, KS_CLOSING = 11 };

/* The first request comes after the acceptor's agent forgot the accept
 * that found no offer (it refuses offers for 500 ms after: "the late
 * offer", docs/broker.md), then every 200 ms doubling to 1.6 s. */
#define PROMO_FIRST_NS (600ULL * 1000000)
#define PROMO_FIRST_MS 200
#define PROMO_MAX_MS 1600       /* back-off doubles up to this */
#define PROMO_TAKE_NS (1000ULL * 1000000) /* an offer not taken by then is withdrawn */
#define PROMO_LOOK_NS (1000ULL * 1000)    /* acceptor: one look a millisecond at most */
#define PROMO_MAX_UNTAKEN 8     /* offers never taken in a row: the peer cannot */
/* IVSOCK_RING_GROW (ivs_policy_tx) */
#define HEAVY_WIN_NS (100ULL * 1000000)  /* one window of accounting */
#define HEAVY_COOL_NS (300ULL * 1000000) /* after a move: no other before */
#define HEAVY_MIN_CYCLES 32              /* ring sizes written in a window */


void ivs_mux_fd_promoted(int fd);
__attribute__((weak)) void ivs_mux_fd_promoted(int fd) { (void)fd; }

/* ---- the kernel's byte counts (docs/switch.md, "Offsets from the kernel") ---- */

static bool fin_received(unsigned state)
{
	return state == KS_CLOSE_WAIT || state == KS_LAST_ACK || state == KS_CLOSING ||
	       state == KS_TIME_WAIT || state == KS_CLOSE;
}

static int tcp_info_of(int fd, struct tcp_info *ti)
{
	socklen_t len = sizeof(*ti);

	memset(ti, 0, sizeof(*ti));
	if (ivs_rc.getsockopt(fd, IPPROTO_TCP, TCP_INFO, ti, &len) < 0)
		return -errno;
	if (len < offsetof(struct tcp_info, tcpi_bytes_received) + sizeof(ti->tcpi_bytes_received))
		return -EOPNOTSUPP;
	return 0;
}

/*
 * Bytes the program wrote to fd (sent) or read from it (got; one of the two),
 * with nothing of ours in flight. tcpi_bytes_acked counts the connector's
 * SYN; tcpi_bytes_received counts the peer's FIN once it came.
 * @return 0, -EOPNOTSUPP (a kernel without the counters), -EAGAIN (the
 * counters kept moving), -errno.
 */
static int kernel_counts(int fd, bool connector, uint64_t *sent, uint64_t *got, bool *established,
			 int *queued)
{
	struct tcp_info a, b;
	int q = 0, rc;

	/* The two counts of a sum come from two syscalls, and an ACK (or an
	 * arrival) between them moves both: read the kernel's counter before
	 * and after the queue length and take the sum only when it did not
	 * move (a few tries; else look again at the next call). */
	for (int tries = 0; tries < 8; tries++) {
		if ((rc = tcp_info_of(fd, &a)) < 0)
			return rc;
		if (established)
			*established = a.tcpi_state == KS_ESTABLISHED;
		if (!sent && !got)
			return 0;
		if (ivs_rc.ioctl(fd, sent ? SIOCOUTQ : SIOCINQ, &q) < 0)
			return -errno;
		if ((rc = tcp_info_of(fd, &b)) < 0)
			return rc;
		if (sent && a.tcpi_bytes_acked == b.tcpi_bytes_acked) {
			*sent = a.tcpi_bytes_acked + (uint64_t)q - (connector ? 1 : 0);
			if (queued)
				*queued = q;
			return 0;
		}
		if (!sent && a.tcpi_bytes_received == b.tcpi_bytes_received &&
		    a.tcpi_state == b.tcpi_state) {
			*got = a.tcpi_bytes_received - (uint64_t)q -
			       (fin_received(a.tcpi_state) ? 1 : 0);
			if (queued)
				*queued = q;
			return 0;
		}
	}
	return -EAGAIN;
}

/* ---- PLAIN entries that may be promoted ---- */

#define TRACK_RETRY_NS (1000ULL * 1000000) /* no room for a TCP entry: again after */
#define TRACK_WAIT_NS (10ULL * 1000000)    /* not established yet: look again after */

/*
 * A PLAIN connector that may be promoted records its connection as a TCP
 * entry with its agent (docs/switch.md, "Connections on TCP"): operators
 * see it in `ivsockctl channels` and may promote it. Once it is
 * established; nothing else depends on it (without an entry the
 * connection is still promoted on its own when rings come free).
 */
static void track(struct ivs_sock *s, int fd, uint64_t now)
{
	uint32_t idx, gen;
	bool est = false;
	int rc;

	if (s->track_gen || s->promo_acceptor || !s->dport || now < s->track_next_ns)
		return;
	if (kernel_counts(fd, true, NULL, NULL, &est, NULL) < 0 || !est) {
		s->track_next_ns = now + TRACK_WAIT_NS; /* still connecting, or ending */
		return;
	}
	s->track_next_ns = now + TRACK_RETRY_NS;
	rc = ivsock_agent_track(&s->ag->conn, fd, &s->dst, s->dport, &idx, &gen);
	if (rc < 0) {
		if (rc != -ENOSPC && rc != -EDQUOT && rc != -ETIMEDOUT)
			s->track_next_ns = UINT64_MAX; /* not such a socket: never */
		return;
	}
	s->track_idx = idx;
	s->track_gen = gen;
	s->track_req = ivsock_load_acquire(&s->ag->rg->channels[idx].promote_req);
}

/* The entry goes: the connection has a channel again, or is closed, or
 * will never be promoted. Our client recorded it, so no socket goes with
 * the request: a socket in flight to the agent would outlive the
 * program's close() of it, and its epoll registrations with it (events
 * for an fd the program has closed). */
static void untrack(struct ivs_sock *s, int fd)
{
	(void)fd;
	if (!s->track_gen)
		return;
	ivsock_agent_close_end(&s->ag->conn, -1, s->track_idx, s->track_gen,
			       IVSOCK_SIDE_CONNECTOR, false);
	s->track_gen = 0;
}

/*
 * Has ivsockd asked (the operator's `channel promote` of our entry)? Then
 * ask for a ring at once, of the size it names (a hint: the agent picks
 * the class). One acquire load of a word only ivsockd writes.
 */
static void operator_request(struct ivs_sock *s, uint64_t now)
{
	const struct ivsock_channel *c;
	uint32_t req, size;

	if (!s->track_gen)
		return;
	if (ivsock_chan_state(s->ag->rg, s->track_idx, s->track_gen) != IVSOCK_CHAN_TCP) {
		s->track_gen = 0; /* freed under us (our agent restarted): record it again */
		s->track_next_ns = now;
		return;
	}
	c = &s->ag->rg->channels[s->track_idx];
	req = ivsock_load_acquire((ivsock_a32 *)&c->promote_req);
	if (req == s->track_req)
		return;
	s->track_req = req;
	size = ivsock_load_relaxed((ivsock_a32 *)&c->resize_to);
	s->promo_size = size <= (1U << 30) ? size : 0;
	s->promo_auto = true;
	s->promo_next_ns = now;
	s->promo_backoff_ms = PROMO_FIRST_MS;
	s->promo_fails = 0;
	ivs_count(IVS_C_PROMO_OPERATOR, 1);
	ivs_debug("fd connector of TCP entry %u: the operator asks for a %u-byte ring",
		  s->track_idx, size);
}

static void backoff(struct ivs_sock *s, uint64_t now)
{
	s->promo_next_ns = now + (uint64_t)s->promo_backoff_ms * 1000000ULL;
	if (s->promo_backoff_ms < PROMO_MAX_MS)
		s->promo_backoff_ms *= 2;
}

static void install(struct ivs_sock *s, int fd)
{
	s->kfd = fd;
	s->promo_ok = true;
	s->promo_backoff_ms = PROMO_FIRST_MS;
	s->promo_next_ns = ivs_now_ns() + PROMO_FIRST_NS;
	atomic_store(&s->state, IVS_ST_PLAIN);
	atomic_store(&s->closed, 1); /* no channel end of ours */
	if (ivs_fd_install(fd, s) < 0)
		s->promo_ok = false;
	ivs_sock_put(s);
}

void ivs_promo_connector(struct ivs_agent *ag, int fd, const struct ivsock_tuple *t, int vm)
{
	struct ivs_sock *s;

	if (ivs_fd_lookup(fd) || !(s = ivs_sock_new(IVS_CONN, ag)))
		return;
	s->dst = t->dst;
	s->dport = t->dport;
	s->dst_vm = (uint8_t)vm;
	s->promo_auto = true;
	track(s, fd, ivs_now_ns()); /* listed from the start if connected */
	install(s, fd);
}

void ivs_promo_watch(struct ivs_agent *ag, int fd, const struct ivsock_tuple *t, int vm)
{
	struct ivs_sock *s;

	if (ivs_fd_lookup(fd) || !(s = ivs_sock_new(IVS_CONN, ag)))
		return;
	s->dst = t->dst;
	s->dport = t->dport;
	s->dst_vm = (uint8_t)vm;
	s->promo_listen = true;
	install(s, fd); /* its first look 600 ms from now */
}

/* A watching connector: has a shimmed listener appeared at the destination
 * (its server's listen() came before its agent: the acceptor registers it
 * at its next accept)? One read-only look at the registry per back-off
 * period (200 ms doubling to 1.6 s). Then it asks like a connector that
 * found no rings, after the acceptor's agent forgot the accept that found
 * no offer. */
static void watch_listener(struct ivs_sock *s, uint64_t now)
{
	if (now < s->promo_next_ns)
		return;
	backoff(s, now);
	if (ivsock_listener_find(s->ag->rg, s->dst_vm, &s->dst, s->dport) < 0)
		return;
	s->promo_listen = false;
	s->promo_auto = true;
	s->promo_backoff_ms = PROMO_FIRST_MS;
	s->promo_next_ns = now + PROMO_FIRST_NS;
	s->track_next_ns = now; /* both ends run the shim now: listed */
	ivs_debug("connector to port %u: a shimmed listener is there now", s->dport);
}

static int tuple_of(int fd, struct ivsock_tuple *t)
{
	struct sockaddr_storage a, b;
	socklen_t al = sizeof(a), bl = sizeof(b);

	memset(t, 0, sizeof(*t));
	if (getpeername(fd, (struct sockaddr *)&a, &al) < 0 ||
	    getsockname(fd, (struct sockaddr *)&b, &bl) < 0 ||
	    ivsock_addr_from_sockaddr(&t->src, &t->sport, (struct sockaddr *)&a, al) < 0 ||
	    ivsock_addr_from_sockaddr(&t->dst, &t->dport, (struct sockaddr *)&b, bl) < 0)
		return -1;
	return 0;
}

void ivs_promo_acceptor(struct ivs_agent *ag, int fd)
{
	struct ivsock_tuple t;
	struct ivs_sock *s;
	int vm;

	if (ivs_fd_lookup(fd) || tuple_of(fd, &t) < 0)
		return;
	/* only a peer that may run the shim: a VM of the domain (or us) */
	vm = ivsock_addr_is_loopback(&t.src) ? (int)ag->me.vm : ivsock_dir_find_addr(ag->rg, &t.src);
	if (vm < 0 || !(s = ivs_sock_new(IVS_CONN, ag)))
		return;
	s->ptuple = t;
	s->promo_acceptor = true;
	install(s, fd); /* its first look comes after the connector's first request */
}

void ivs_promo_after_switch(struct ivs_sock *s, int fd)
{
	bool resize = atomic_load(&s->demote) == IVSOCK_SWITCH_WHY_RESIZE;
	uint64_t now = ivs_now_ns();

	atomic_store(&s->ptx, 0);
	atomic_store(&s->prx, 0);
	if (s->inherited || s->shared || s->fork_gen != atomic_load(&ivs_fork_gen))
		return; /* another image or process: leave it on TCP */
	if (s->v.side == IVSOCK_SIDE_ACCEPTOR) {
		if (!s->promo_acceptor && tuple_of(fd, &s->ptuple) < 0)
			return;
		s->promo_acceptor = true;
		s->promo_next_ns = 0; /* look at once */
	} else {
		if (!s->dport)
			return;
		s->promo_acceptor = false;
		/* listed as a connection on TCP at once, unless a new ring
		 * follows right away (then only if it did not come) */
		s->track_next_ns = resize ? now + PROMO_FIRST_NS : now;
		if (resize) {
			s->promo_auto = true; /* the new ring, at once */
			s->promo_next_ns = now;
		} else if (atomic_load(&s->demote) == IVSOCK_SWITCH_WHY_RECLAIM) {
			/* ivsockd took the ring back from an idle connection:
			 * a ring again when it is next used, if there is room */
			s->promo_auto = true;
			s->promo_next_ns = now + PROMO_FIRST_NS;
		} else {
			s->promo_next_ns = now + PROMO_FIRST_NS;
		}
		s->promo_backoff_ms = PROMO_FIRST_MS;
		s->promo_fails = 0;
	}
	s->promo_ok = true;
}

/* Give up for good (forked, exec'd peer, closed): the socket stays TCP. */
static void forget(struct ivs_sock *s, int fd)
{
	untrack(s, fd);
	s->promo_ok = false;
}

static void withdraw(struct ivs_sock *s, int fd)
{
	ivsock_agent_abandon(&s->ag->conn, fd, s->v.idx, s->v.gen);
	ivs_conn_detach(s);
	ivsock_agent_close_end(&s->ag->conn, -1, s->v.idx, s->v.gen,
			       s->promo_acceptor ? IVSOCK_SIDE_ACCEPTOR : IVSOCK_SIDE_CONNECTOR,
			       false);
	s->promo_offer = s->promo_taken = false;
}

void ivs_promo_release(struct ivs_sock *s, int fd)
{
	if (s->promo_offer)
		withdraw(s, fd);
	if (s->promo_taken) {
		ivs_conn_detach(s);
		ivsock_agent_close_end(&s->ag->conn, -1, s->v.idx, s->v.gen,
				       IVSOCK_SIDE_ACCEPTOR, false);
		s->promo_taken = false;
	}
	forget(s, fd);
}

/*
 * The channel is ours at both ends: CONNECTED with both directions still
 * on TCP, once no call of ours is in the kernel on the socket. @return
 * true when done (else the next call tries again).
 */
static bool go_connected(struct ivs_sock *s, int fd)
{
	int fl;

	atomic_store(&s->promo_busy, 1);
	if (atomic_load(&s->kbusy) != 0) {
		atomic_store(&s->promo_busy, 0);
		return false;
	}
	atomic_store(&s->ptx, 1);
	atomic_store(&s->prx, 1);
	atomic_store(&s->demote, 0);
	atomic_store(&s->tx_tcp, 0);
	atomic_store(&s->revoked, 0);
	atomic_store(&s->let_go, 0);
	atomic_store(&s->kfin, 0);
	atomic_store(&s->kshut_done, 0);
	s->shut_wr = s->shut_rd = false;
	s->reset_told = false;
	s->kfd = fd;
	s->fork_gen = atomic_load(&ivs_fork_gen);
	/* O_NONBLOCK as it is now: set through fcntl/ioctl while PLAIN, which
	 * the shim does not follow */
	fl = ivs_rc.fcntl(fd, F_GETFL);
	atomic_store(&s->nonblock, fl >= 0 && (fl & O_NONBLOCK));
	s->promo_offer = s->promo_taken = false;
	atomic_store(&s->closed, 0);
	s->hv_calls = s->hv_full = 0;
	s->hv_bytes = s->hv_start = 0;
	s->hv_cool = ivs_now_ns() + HEAVY_COOL_NS;
	atomic_store(&s->state, IVS_ST_CONNECTED);
	atomic_fetch_add(&s->event_seq, 1);
	/* from here every call goes through the shim, which never waits in
	 * the kernel for this socket without the wake fd */
	ivsock_store_relaxed(&s->v.my_ctl->ring_tx_before, s->ring_tx_done);
	ivsock_store_relaxed(&s->v.my_ctl->ring_rx_before, s->ring_rx_done);
	ivsock_store_release(&s->v.my_ctl->rx_ready, 1);
	ivs_ring_peer(s);
	atomic_store(&s->promo_busy, 0);
	untrack(s, fd); /* the channel is the connection's entry now */
	ivs_count(IVS_C_PROMOTED, 1);
	ivs_debug("fd %d: promoted to channel %u (both directions still on TCP)", fd, s->v.idx);
	ivs_mux_fd_promoted(fd);
	return true;
}

static void connector_poke(struct ivs_sock *s, int fd, uint64_t now)
{
	struct ivsock_ag_chan r;
	bool est = false;
	int rc, wfd = -1;

	if (s->promo_offer) {
		rc = ivsock_chan_learn_peer(s->ag->rg, &s->v);
		if (rc == 0) {
			go_connected(s, fd);
			return;
		}
		/* ACCEPTING: the acceptor won it and is attaching: wait */
		if (rc == -EAGAIN && (ivsock_chan_state(s->ag->rg, s->v.idx, s->v.gen) ==
					      IVSOCK_CHAN_ACCEPTING ||
				      now - s->offered_ns < PROMO_TAKE_NS))
			return;
		/* not taken in time (the acceptor makes no call, or cannot
		 * attach), or gone: the channel goes back to the pool */
		withdraw(s, fd);
		ivs_count(IVS_C_PROMO_UNTAKEN, 1);
		if (++s->promo_fails >= PROMO_MAX_UNTAKEN)
			forget(s, fd);
		backoff(s, now);
		return;
	}
	if (s->promo_listen) {
		watch_listener(s, now);
		return;
	}
	track(s, fd, now);
	operator_request(s, now);
	if (!s->promo_auto || now < s->promo_next_ns)
		return;
	backoff(s, now);
	/* both directions open: no FIN either way */
	if (kernel_counts(fd, true, NULL, NULL, &est, NULL) < 0 || !est)
		return;
	rc = ivsock_agent_open(&s->ag->conn, fd, &s->dst, s->dport,
			       s->promo_size ? s->promo_size :
			       ivs_cfg.ring_size ? (uint32_t)ivs_cfg.ring_size : IVSOCK_AG_CLASS_DEFAULT,
			       0, &r, &wfd);
	if (rc < 0) {
		if (rc != -ENOSPC && rc != -EDQUOT && rc != -ETIMEDOUT)
			forget(s, fd); /* no listener any more, not a VM: for good */
		return;
	}
	ivs_count(IVS_C_PROMO_ASKED, 1);
	if (ivs_conn_attach_block(s->ag, s, &r, wfd) < 0) {
		ivsock_agent_abandon(&s->ag->conn, fd, r.channel, r.channel_gen);
		ivsock_agent_close_end(&s->ag->conn, -1, r.channel, r.channel_gen,
				       IVSOCK_SIDE_CONNECTOR, false);
		return;
	}
	s->promo_offer = true;
	s->offered_ns = now;
}

static void acceptor_poke(struct ivs_sock *s, int fd, uint64_t now)
{
	struct ivsock_ag_chan r;
	bool est = false;
	int rc, wfd = -1;

	if (s->promo_taken) {
		go_connected(s, fd);
		return;
	}
	if (now < s->promo_next_ns)
		return;
	s->promo_next_ns = now + PROMO_LOOK_NS;
	if (!ivsock_offer_posted(s->ag->rg, &s->ptuple, (uint8_t)s->ag->me.vm) ||
	    atomic_load(&s->kbusy) != 0)
		return;
	if (kernel_counts(fd, false, NULL, NULL, &est, NULL) < 0 || !est)
		return;
	rc = ivsock_agent_accept(&s->ag->conn, fd, &r, &wfd);
	if (rc < 0)
		return;
	if (ivs_conn_attach_block(s->ag, s, &r, wfd) < 0) {
		ivsock_agent_close_end(&s->ag->conn, -1, r.channel, r.channel_gen,
				       IVSOCK_SIDE_ACCEPTOR, true);
		return;
	}
	s->promo_taken = true;
	go_connected(s, fd);
}

/* One look at whether s can move to a ring now (any thread, any call). */
static void poke(struct ivs_sock *s, int fd)
{
	if (atomic_exchange(&s->promo_lock, 1))
		return;
	if (atomic_load(&s->state) == IVS_ST_PLAIN && s->promo_ok) {
		if (s->fork_gen != atomic_load(&ivs_fork_gen))
			forget(s, fd); /* another process holds it too */
		else if (s->promo_acceptor)
			acceptor_poke(s, fd, ivs_now_ns());
		else
			connector_poke(s, fd, ivs_now_ns());
	}
	atomic_store(&s->promo_lock, 0);
}

/* ---- the data path's entry ---- */

bool ivs_promo_enter(struct ivs_sock *s)
{
	atomic_fetch_add(&s->kbusy, 1);
	if (!atomic_load(&s->promo_busy))
		return true;
	atomic_fetch_sub(&s->kbusy, 1);
	while (atomic_load(&s->promo_busy))
		sched_yield();
	return false;
}

struct ivs_sock *ivs_io_get(int fd, struct ivs_sock **tcp)
{
	struct ivs_sock *s;

	*tcp = NULL;
	for (;;) {
		s = ivs_fd_get(fd);
		if (!s)
			return NULL;
		if (s->kind != IVS_CONN) {
			ivs_sock_put(s);
			return NULL;
		}
		if (atomic_load(&s->state) != IVS_ST_PLAIN)
			return s;
		if (!s->promo_ok) {
			ivs_sock_put(s);
			return NULL;
		}
		poke(s, fd);
		if (atomic_load(&s->state) != IVS_ST_PLAIN)
			return s;
		if (ivs_promo_enter(s)) {
			if (atomic_load(&s->state) == IVS_ST_PLAIN) {
				*tcp = s;
				return NULL;
			}
			atomic_fetch_sub(&s->kbusy, 1); /* promoted meanwhile */
		}
		/* a promotion changed (or is changing) the state: look again */
		ivs_sock_put(s);
	}
}

void ivs_promo_leave(struct ivs_sock *tcp)
{
	atomic_fetch_sub(&tcp->kbusy, 1);
	ivs_sock_put(tcp);
}

/* The poll engine: fd is waited on in the kernel. @return the socket to
 * leave afterwards (kbusy raised), or NULL; *again: it is accelerated now,
 * classify it again. */
struct ivs_sock *ivs_sock_kernel_enter(int fd, bool *again)
{
	struct ivs_sock *s, *tcp;

	*again = false;
	if (!ivs_fd_lookup(fd))
		return NULL;
	s = ivs_io_get(fd, &tcp);
	if (s) {
		ivs_sock_put(s);
		*again = true;
		return NULL;
	}
	return tcp;
}

void ivs_sock_kernel_leave(struct ivs_sock *tcp)
{
	ivs_promo_leave(tcp);
}

bool ivs_sock_promotable(int fd)
{
	struct ivs_sock *s = ivs_fd_lookup(fd);

	return s && s->kind == IVS_CONN && s->promo_ok &&
	       atomic_load(&s->state) == IVS_ST_PLAIN;
}

/* ---- IVSOCK_RING_GROW: heavy flows to larger rings ---- */


/* The smallest class of the region larger than size, or 0. */
static uint32_t next_class(const struct ivsock_region *rg, uint32_t size)
{
	uint32_t best = 0;

	for (uint32_t i = 0; i < rg->nclasses && i < IVSOCK_CLASS_MAX; i++) {
		uint32_t rs = rg->class[i].ring_size;

		if (rs > size && (!best || rs < best))
			best = rs;
	}
	return best;
}

void ivs_policy_tx(struct ivs_sock *s, size_t sent, bool full)
{
	uint64_t now;
	uint32_t to;
	bool heavy;
	int expect = 0;

	s->hv_calls++;
	s->hv_full += full;
	s->hv_bytes += sent;
	if (s->hv_calls < 64)
		return; /* the clock once in 64 sends */
	now = ivs_now_ns();
	if (!s->hv_start)
		s->hv_start = now;
	if (now - s->hv_start < HEAVY_WIN_NS) {
		if (s->hv_calls > (1U << 30))
			s->hv_calls = s->hv_full = 0;
		return;
	}
	/* Heavy: at least half of the sends found the ring full, and the ring
	 * was written through many times over: the ring, not the reader, is
	 * what holds the flow back (docs/classes.md, "Heavy flows"). */
	heavy = s->hv_full * 2 >= s->hv_calls &&
		s->hv_bytes >= (uint64_t)HEAVY_MIN_CYCLES * s->v.tx.size && now >= s->hv_cool;
	s->hv_calls = s->hv_full = 0;
	s->hv_bytes = 0;
	s->hv_start = now;
	if (!heavy || atomic_load(&s->demote) || atomic_load(&s->tx_tcp) || atomic_load(&s->ptx) ||
	    atomic_load(&s->prx) || s->shut_wr || s->inherited || !ivs_switch_ours(s) ||
	    (s->v.side == IVSOCK_SIDE_CONNECTOR && !s->dport))
		return;
	to = next_class(s->ag->rg, (uint32_t)s->v.tx.size);
	if (!to)
		return;
	s->promo_size = to;
	if (!atomic_compare_exchange_strong(&s->demote, &expect, IVSOCK_SWITCH_WHY_RESIZE))
		return;
	s->hv_cool = now + HEAVY_COOL_NS;
	atomic_fetch_add(&s->event_seq, 1);
	ivs_count(IVS_C_RING_GROW, 1);
	ivs_debug("channel %u: heavy flow on a %zu-byte ring: moves to %u bytes", s->v.idx,
		  (size_t)s->v.tx.size, to);
}

/* ---- CONNECTED after a promotion ---- */

void ivs_promo_tx(struct ivs_sock *s, int fd)
{
	uint64_t sent;
	bool est = false;

	if (!atomic_load(&s->ptx) || atomic_load(&s->tx_tcp) || atomic_load(&s->demote) ||
	    s->shut_wr || !ivs_switch_ours(s) ||
	    !ivsock_load_acquire(&s->v.peer_ctl->rx_ready))
		return;
	/* every write of ours went through this lock: the count is exact */
	if (kernel_counts(fd, s->v.side == IVSOCK_SIDE_CONNECTOR, &sent, NULL, &est, NULL) < 0 || !est ||
	    sent >= IVSOCK_START_RING)
		return;
	ivsock_store_release(&s->v.my_ctl->tx_start, IVSOCK_START_RING | sent);
	atomic_store(&s->ptx, 0);
	atomic_fetch_add(&s->event_seq, 1);
	ivs_count(IVS_C_SWITCH_TX_RING, 1);
	ivs_debug("channel %u: tx continues on the ring after %llu TCP bytes", s->v.idx,
		  (unsigned long long)sent);
	ivs_ring_peer(s);
}

int ivs_promo_rx_left(struct ivs_sock *s, int fd, size_t *left)
{
	uint64_t st = ivsock_load_acquire(&s->v.peer_ctl->tx_start), got, j;

	*left = SIZE_MAX;
	if (!(st & IVSOCK_START_RING))
		return 0; /* every TCP byte there is before the ring */
	j = st & ~IVSOCK_START_RING;
	if (kernel_counts(fd, s->v.side == IVSOCK_SIDE_CONNECTOR, NULL, &got, NULL, NULL) < 0) {
		*left = 0; /* not now: nothing may be read before we know */
		return 0;
	}
	if (got > j)
		return -ECONNRESET; /* we read past where the peer says TCP ended */
	if (got < j) {
		*left = (size_t)(j - got);
		return 0;
	}
	atomic_store(&s->prx, 0);
	atomic_fetch_add(&s->event_seq, 1);
	ivs_count(IVS_C_SWITCH_RX_RING, 1);
	ivs_debug("channel %u: rx continues on the ring after %llu TCP bytes", s->v.idx,
		  (unsigned long long)j);
	return 1;
}

int ivs_promo_inq(struct ivs_sock *s, int fd, int *n)
{
	uint64_t st = ivsock_load_acquire(&s->v.peer_ctl->tx_start), got, j;
	int q = 0;

	if (!(st & IVSOCK_START_RING)) {
		/* every TCP byte there is before the ring */
		if (ivs_rc.ioctl(fd, SIOCINQ, &q) < 0)
			return -errno;
		*n = q;
		return 0;
	}
	j = st & ~IVSOCK_START_RING;
	/* the queue length and the read count of one snapshot */
	if (kernel_counts(fd, s->v.side == IVSOCK_SIDE_CONNECTOR, NULL, &got, NULL, &q) < 0) {
		if (ivs_rc.ioctl(fd, SIOCINQ, &q) < 0)
			return -errno;
		*n = q;
		return 0;
	}
	*n = q;
	if (got >= j)
		return 1;
	if ((uint64_t)q > j - got)
		*n = (int)(j - got);
	return 0;
}

void ivs_promo_progress(struct ivs_sock *s, int fd)
{
	size_t left;

	if (atomic_load(&s->ptx) && pthread_mutex_trylock(&s->tx_lock) == 0) {
		ivs_promo_tx(s, fd);
		pthread_mutex_unlock(&s->tx_lock);
	}
	if (atomic_load(&s->prx) && pthread_mutex_trylock(&s->rx_lock) == 0) {
		ivs_promo_rx_left(s, fd, &left);
		pthread_mutex_unlock(&s->rx_lock);
	}
}
