// SPDX-License-Identifier: MIT
/* The data path of an accelerated socket: ring reads and writes with the
 * sleep/wake rule (spin, arm, sleep on the wake eventfd and the kernel
 * socket), blocking and non-blocking, PEEK/WAITALL/DONTWAIT/NOSIGNAL,
 * timeouts, EOF, ECONNRESET, EPIPE; and the connector's fallback triggers. */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>

#include "ivsock/listener.h"
#include "sock_int.h"

#define SLEEP_MAX_MS 100
/* The multiplexers' sleep-slice request (mux.h). */
extern _Thread_local bool mux_arm_slice;
#define IOV_MAX_SHIM 1024

static size_t iov_total(const struct iovec *iov, int n)
{
	size_t t = 0;

	for (int i = 0; i < n; i++)
		t += iov[i].iov_len;
	return t;
}

/* The part of iov after `skip` bytes (into out[], at most n entries). */
static int iov_rest(const struct iovec *iov, int n, size_t skip, struct iovec *out)
{
	int k = 0;

	for (int i = 0; i < n; i++) {
		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		out[k].iov_base = (char *)iov[i].iov_base + skip;
		out[k++].iov_len = iov[i].iov_len - skip;
		skip = 0;
	}
	return k;
}

/* After `done` bytes on the ring, the rest of a call on the kernel socket
 * (its path switched to TCP): `more` asks for the rest (blocking) rather
 * than what is there now. @return done + what the socket took/gave, or
 * -errno when done is 0. */
static ssize_t kernel_rest(int fd, const struct iovec *iov, int n, size_t done, int flags,
			   bool send, bool more)
{
	struct iovec rest[IOV_MAX_SHIM];
	struct msghdr m = { .msg_iov = rest };
	ssize_t k;

	if (n > IOV_MAX_SHIM)
		n = IOV_MAX_SHIM;
	m.msg_iovlen = (size_t)iov_rest(iov, n, done, rest);
	if (!m.msg_iovlen)
		return (ssize_t)done;
	if (!send) {
		flags &= ~MSG_WAITALL;
		if (more)
			flags |= MSG_WAITALL;
	}
	if (done && !more)
		flags |= MSG_DONTWAIT;
	k = send ? ivs_rc.sendmsg(fd, &m, flags | MSG_NOSIGNAL) : ivs_rc.recvmsg(fd, &m, flags);
	if (k < 0)
		return done ? (ssize_t)done : -errno;
	return (ssize_t)done + k;
}

/* Apply fn over iov starting `skip` bytes in, stopping at the first short op.
 * op: 0 read, 1 peek (offset = skip), 2 write. */
static ssize_t ring_iov(struct ivsock_ring *r, const struct iovec *iov, int n,
			size_t skip, int op)
{
	size_t done = 0, off = skip;

	for (int i = 0; i < n; i++) {
		size_t len = iov[i].iov_len;
		ssize_t k;

		if (off >= len) {
			off -= len;
			continue;
		}
		if (op == 0)
			k = ivsock_ring_read(r, (char *)iov[i].iov_base + off, len - off);
		else if (op == 1)
			k = ivsock_ring_peek(r, (char *)iov[i].iov_base + off, len - off, skip + done);
		else
			k = ivsock_ring_write(r, (const char *)iov[i].iov_base + off, len - off, false);
		if (k <= 0)
			return done ? (ssize_t)done : k;
		done += (size_t)k;
		if ((size_t)k < len - off)
			break;
		off = 0;
	}
	return (ssize_t)done;
}

/*
 * Adaptive spinning, per thread and direction (a connect/close loop makes a
 * new socket each time): a spin that ends with the peer's answer doubles
 * the budget (to at least twice that wait, up to IVSOCK_SPIN_US), one that
 * ends in a sleep halves it; a wait probes with the full budget every 64th
 * time. In the second half of the budget the spinner offers its CPU with
 * sched_yield(). If another task did run then (the thread's involuntary
 * context switches went up), the wait counts as lost: the peer, or a task
 * the peer competes with, needed our CPU and spinning only delayed the
 * answer. A yield that ran nobody (each end on a CPU of its own) does not
 * count: otherwise one slow answer (a peer that slept, an idle vCPU waking
 * up) would make both ends fall back to sleeping, where every wait is that
 * slow and no probe could win again. A lost probe doubles the probe
 * interval (up to every 1024th wait): on a CPU shared with the peer a
 * probe spins half its budget while the peer waits for that very CPU. A
 * won probe brings it back to 64.
 */
struct spin_st {
	uint32_t budget; /* ns; UINT32_MAX: not set yet */
	uint32_t waits;
	uint32_t every;  /* probe when (waits & every) == 0; 2^k - 1 */
	bool probing;    /* this wait is a probe above the budget */
};

static __thread struct spin_st tl_rx_spin = { UINT32_MAX, 0, 63, false };
static __thread struct spin_st tl_tx_spin = { UINT32_MAX, 0, 63, false };

static uint64_t spin_budget(struct spin_st *st)
{
	if (st->budget == UINT32_MAX)
		st->budget = (uint32_t)ivs_cfg.spin_ns;
	st->probing = false;
	if ((++st->waits & st->every) == 0) {
		st->probing = st->budget < ivs_cfg.spin_ns;
		return ivs_cfg.spin_ns;
	}
	return st->budget;
}

static void probe_done(struct spin_st *st, bool won)
{
	if (!st->probing)
		return;
	st->probing = false;
	if (won)
		st->every = 63;
	else if (st->every < 1023)
		st->every = st->every * 2 + 1;
}

/* The calling thread's involuntary context switches so far. */
static long thread_nivcsw(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_THREAD, &ru) < 0)
		return -1;
	return ru.ru_nivcsw;
}

/* Data came while spinning, `waited` ns after the spin began; `csw` is
 * thread_nivcsw() at the first yield, -1 if it did not yield. */
static void spin_result(struct spin_st *st, uint64_t waited, long csw)
{
	uint64_t b = (uint64_t)st->budget * 2 + 1000;
	bool lost = csw >= 0 && thread_nivcsw() != csw;

	probe_done(st, !lost);
	if (lost) {
		st->budget /= 2;
		return;
	}
	if (b < waited * 2) /* room for twice this wait */
		b = waited * 2;
	st->budget = (uint32_t)(b > ivs_cfg.spin_ns ? ivs_cfg.spin_ns : b);
}

/* One step of a spin of len ns ending at spin_end: pause; in the second
 * half, yield (noting the context switches at the first yield). */
static void spin_step(uint64_t now, uint64_t spin_end, uint64_t len, long *csw)
{
	for (int i = 0; i < 64; i++)
		ivsock_cpu_relax();
	if (spin_end - now >= len / 2)
		return;
	if (*csw < 0)
		*csw = thread_nivcsw();
	sched_yield();
}

static void spin_lost(struct spin_st *st)
{
	probe_done(st, false);
	st->budget /= 2;
}

static int deadline_ms(uint64_t deadline, uint64_t now)
{
	uint64_t left;

	if (!deadline)
		return SLEEP_MAX_MS;
	if (now >= deadline)
		return 0;
	left = (deadline - now + 999999) / 1000000;
	return left > SLEEP_MAX_MS ? SLEEP_MAX_MS : (int)left;
}

static bool peer_dead(struct ivs_sock *s)
{
	return ivsock_chan_peer_flags(s->ag->rg, &s->v) & IVSOCK_END_DEAD;
}

/*
 * The peer aborted (its process died, or its agent reset the channel). Like
 * TCP: ECONNRESET (once) if it died with bytes of ours unread, else a plain
 * end of stream.
 */
static ssize_t reset_or_eof(struct ivs_sock *s)
{
	/* Our tail from the private view; the peer's head validated (a
	 * corrupt one counts as bytes unread). */
	long unread = ivsock_ring_snap_unconsumed(&s->v.tx);

	if (unread == 0 || s->reset_told)
		return 0;
	s->reset_told = true;
	return -ECONNRESET;
}

bool ivs_chan_revoked(struct ivs_sock *s)
{
	if (__builtin_expect(atomic_load_explicit(&s->revoked, memory_order_relaxed), 0))
		return true;
	/* The one acquire load: forced reclaim moves the channel to REVOKED
	 * (same generation); a freed or reused slot has another generation. */
	uint8_t st = ivsock_chan_state(s->ag->rg, s->v.idx, s->v.gen);

	if (__builtin_expect(st == IVSOCK_CHAN_CONNECTED, 1))
		return false;
	if (st == IVSOCK_CHAN_DEMOTED) {
		/* ivsockd asked for TCP (sock_switch.c), and maybe for a new
		 * ring after (resize_to, read after the slot's acquire) */
		uint32_t to = ivsock_load_relaxed(&s->ag->rg->channels[s->v.idx].resize_to);
		int expect = 0;

		int why = to == IVSOCK_RESIZE_RECLAIM ? IVSOCK_SWITCH_WHY_RECLAIM :
			  to ? IVSOCK_SWITCH_WHY_RESIZE : IVSOCK_SWITCH_WHY_OPERATOR;

		if (atomic_compare_exchange_strong(&s->demote, &expect, why)) {
			s->promo_size = why == IVSOCK_SWITCH_WHY_RESIZE ? to : 0;
			atomic_fetch_add(&s->event_seq, 1);
		}
		return false;
	}
	if (!atomic_exchange(&s->revoked, 1)) {
		ivs_count(IVS_C_RESET_REVOKED, 1);
		atomic_fetch_add(&s->event_seq, 1);
		ivs_debug("channel %u revoked or gone: reset", s->v.idx);
	}
	return true;
}

/* What a kernel reset reports: ECONNRESET once, then end of stream (recv)
 * or EPIPE (send). */
static ssize_t revoked_rc(struct ivs_sock *s, bool send)
{
	if (!s->reset_told) {
		s->reset_told = true;
		return -ECONNRESET;
	}
	return send ? -EPIPE : 0;
}

/* The peer's kernel socket hung up (FIN/RST seen on ours) without a ring end
 * of stream: every holder of the peer end is gone without closing the
 * channel (killed while its agent could not clean up, or an image without
 * the shim). A half-close (shutdown(SHUT_WR)) publishes the ring EOF first. */
static bool peer_kernel_gone(struct ivs_sock *s)
{
	return atomic_load_explicit(&s->kfin, memory_order_relaxed) &&
	       !(ivsock_ring_peer_flags(&s->v.rx) & IVSOCK_RING_EOF);
}

/* Kernel-socket events a connector waits for while OFFERED: anything from the
 * server (it is not shimmed), or only its hang-up once the acceptor has won
 * the offer (it is shimmed and merely paused between its two steps). */
static short offer_kev(struct ivs_sock *s)
{
	return s->acceptor_won ? POLLRDHUP : POLLIN | POLLRDHUP;
}

/* Reason a kernel readiness `rev` of an OFFERED connector gives to fall back,
 * or 0. */
static int offer_kernel_reason(struct ivs_sock *s, short rev)
{
	if (rev & (POLLRDHUP | POLLHUP | POLLERR))
		return IVS_C_FB_PEER_CLOSED;
	if ((rev & POLLIN) && !s->acceptor_won)
		return IVS_C_FB_PEER_TCP;
	return 0;
}

static short kernel_now(int fd, short events)
{
	struct pollfd p = { .fd = fd, .events = events };

	return ivs_real.poll(&p, 1, 0) > 0 ? p.revents : 0;
}

/*
 * Is the connector's wait for the acceptor over? After IVSOCK_ATTACH_MS,
 * unless the shimmed listener the offer was made for is still registered
 * (a live, merely busy server: its accept() comes late), then after
 * IVSOCK_ATTACH_MAX_MS. Never once the acceptor won the offer.
 */
static bool attach_overdue(struct ivs_sock *s)
{
	uint64_t now, waited;

	if (!s->offered_ns || s->acceptor_won)
		return false;
	now = ivs_now_ns();
	waited = now - s->offered_ns;
	if (waited <= ivs_cfg.attach_ns)
		return false;
	if (waited > ivs_cfg.attach_max_ns)
		return true;
	if (now - atomic_load_explicit(&s->lcheck_ns, memory_order_relaxed) >= 100000000ULL) {
		atomic_store_explicit(&s->lalive,
				      ivsock_listener_find(s->ag->rg, s->dst_vm, &s->dst, s->dport) >= 0,
				      memory_order_relaxed);
		atomic_store_explicit(&s->lcheck_ns, now, memory_order_relaxed);
	}
	return !atomic_load_explicit(&s->lalive, memory_order_relaxed);
}

/* OFFERED and not waiting: should the connector fall back now? @return the
 * reason (counter) or 0. One poll of the kernel socket. */
static int offer_trigger(struct ivs_sock *s, int fd)
{
	int why = offer_kernel_reason(s, kernel_now(fd, offer_kev(s)));

	if (why)
		return why;
	return attach_overdue(s) ? IVS_C_FB_TIMEOUT : 0;
}

/* prx_read: the ring from now on (prx cleared) */
#define PRX_RING (-100001)

/* One non-blocking read of the TCP part of a promoted connection's rx,
 * never past the peer's tx_start (rx_lock held). @return bytes, 0 at end
 * of stream, PRX_RING, -EAGAIN, -errno. */
static ssize_t prx_read(struct ivs_sock *s, int fd, const struct iovec *iov, int iovcnt,
			size_t skip, int flags, bool peek)
{
	struct iovec rest[IOV_MAX_SHIM];
	struct msghdr m = { .msg_iov = rest };
	size_t left, k = 0;
	int pr = ivs_promo_rx_left(s, fd, &left);
	ssize_t n;

	if (pr == 1)
		return PRX_RING;
	if (pr < 0)
		return pr;
	if (left == 0)
		return -EAGAIN; /* the counts moved under us: look again */
	m.msg_iovlen = (size_t)iov_rest(iov, iovcnt < IOV_MAX_SHIM ? iovcnt : IOV_MAX_SHIM,
					skip, rest);
	for (size_t i = 0; i < m.msg_iovlen; i++) {
		if (rest[i].iov_len > left - k)
			rest[i].iov_len = left - k;
		k += rest[i].iov_len;
		if (k == left) {
			m.msg_iovlen = i + 1;
			break;
		}
	}
	n = ivs_rc.recvmsg(fd, &m, MSG_DONTWAIT | (peek ? MSG_PEEK : 0) |
				       (flags & MSG_TRUNC));
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	if (n == 0 && left != SIZE_MAX)
		return -ECONNRESET; /* end of TCP before the bytes the peer promised */
	return n;
}

/* While promoting, has ivs_switch_progress() something to do? Our tx to
 * move to TCP (DEMOTED seen, or the peer's tx left its ring first), or,
 * both directions on TCP again, the channel to release. */
static bool prx_switch_wanted(struct ivs_sock *s)
{
	if (atomic_load(&s->tx_tcp))
		return ivs_rx_on_tcp(s);
	if (atomic_load(&s->demote))
		return true;
	return ivsock_load_acquire(&s->v.peer_ctl->tx_switch) & IVSOCK_SWITCH_TCP;
}

/* Wait for the kernel socket or a doorbell (the peer's tx_start), as a
 * blocked recv() would. @return 0 (look again), -EAGAIN (SO_RCVTIMEO), -EINTR. */
static int prx_wait(int fd, uint64_t deadline, struct ivs_sigmark *sm, size_t got)
{
	uint64_t now = ivs_now_ns();
	short rev = 0;
	int n;

	if (deadline && now >= deadline)
		return -EAGAIN;
	if (ivs_sig_ran(sm)) {
		if (got || deadline || !ivs_sig_restartable(sm))
			return -EINTR;
		ivs_sig_mark(sm);
	}
	/* 100 ms at most: a backstop, the doorbell is what wakes us */
	n = ivs_sleep(fd, POLLIN | POLLRDHUP, deadline ? deadline_ms(deadline, now) : 100, &rev);
	if (n == -EINTR) {
		if (!got && !deadline && ivs_sig_restartable(sm)) {
			ivs_sig_mark(sm);
			return 0;
		}
		return -EINTR;
	}
	return 0;
}

/* The pending byte counts into the end's ctl words when a direction
 * waits or ends (else once a MiB): what monitors read is then exact
 * whenever the stream is idle (docs/switch.md, "Per-path bytes"). */
static void flush_rx_count(struct ivs_sock *s)
{
	if (s->rx_pending) {
		ivsock_chan_count(NULL, &s->v, 0, s->rx_pending);
		s->rx_pending = 0;
	}
}

void ivs_flush_tx_count(struct ivs_sock *s)
{
	if (s->tx_pending) {
		ivsock_chan_count(NULL, &s->v, s->tx_pending, 0);
		s->tx_pending = 0;
	}
}

ssize_t ivs_recv(struct ivs_sock *s, int fd, const struct iovec *iov, int iovcnt, int flags)
{
	bool peek = flags & MSG_PEEK, waitall = (flags & MSG_WAITALL) && !peek;
	bool dontwait = (flags & MSG_DONTWAIT) || atomic_load(&s->nonblock);
	size_t total = iov_total(iov, iovcnt), got = 0;
	uint64_t deadline = 0, spin_end = 0, now;
	ssize_t rc = 0, n;
	struct ivs_sigmark sm;
	uint64_t spin_len = 0;
	bool spun = false, slept = false;
	long csw = -1; /* involuntary switches at the first yield */
	short rev;
	int st;

	if (flags & MSG_OOB)
		return -EOPNOTSUPP;
	if (total == 0 || s->shut_rd)
		return 0;
	if (s->rcvtimeo_ms && !dontwait)
		deadline = ivs_now_ns() + (uint64_t)s->rcvtimeo_ms * 1000000;
	ivs_sig_mark(&sm);
	pthread_mutex_lock(&s->rx_lock);
	for (;;) {
		if (atomic_load(&s->closed) && atomic_load(&s->state) != IVS_ST_PLAIN) {
			rc = got ? (ssize_t)got : -EBADF; /* closed by another thread */
			break;
		}
		st = atomic_load(&s->state);
		if (st == IVS_ST_PLAIN) {
			rc = got ? (ssize_t)got : IVS_PASS;
			break;
		}
		ivs_sock_refresh(s);
		if (st == IVS_ST_OFFERED && ivs_conn_check_attached(s) == -ESTALE) {
			pthread_mutex_unlock(&s->rx_lock);
			ivs_conn_fallback(s, fd, IVS_C_FB_ABANDONED);
			pthread_mutex_lock(&s->rx_lock);
			continue;
		}
		if (st == IVS_ST_CONNECTED && ivs_chan_revoked(s)) {
			rc = got ? (ssize_t)got : revoked_rc(s, false);
			break;
		}
		if (st == IVS_ST_CONNECTED && atomic_load(&s->prx)) {
			/* promoted: our rx is on TCP up to the peer's tx_start */
			n = prx_read(s, fd, iov, iovcnt, got, flags, peek);
			if (n == PRX_RING)
				continue;
			if (n > 0) {
				got += (size_t)n;
				if (!peek)
					atomic_fetch_add_explicit(&s->event_seq, 1, memory_order_relaxed);
				if (!waitall || got == total) {
					rc = (ssize_t)got;
					break;
				}
				continue;
			}
			if (n != -EAGAIN) {
				rc = got ? (ssize_t)got : n;
				break;
			}
			if (prx_switch_wanted(s) && ivs_switch_ours(s)) {
				/* demoted (or the peer left) before this promotion
				 * finished: as on the ring, the reader moves its tx
				 * and lets go of the channel itself; a writer
				 * waiting for our rx lock to do it would wait as
				 * long as we sleep here */
				pthread_mutex_unlock(&s->rx_lock);
				ivs_switch_progress(s, fd, 0, false);
				pthread_mutex_lock(&s->rx_lock);
				continue;
			}
			if (dontwait) {
				rc = got ? (ssize_t)got : -EAGAIN;
				break;
			}
			n = prx_wait(fd, deadline, &sm, got);
			if (n < 0) {
				rc = got ? (ssize_t)got : n;
				break;
			}
			continue;
		}
		n = ring_iov(&s->v.rx, iov, iovcnt, got, peek ? 1 : 0);
		if (n > 0) {
			if (spun && !slept)
				spin_result(&tl_rx_spin, ivs_now_ns() - (spin_end - spin_len), csw);
			got += (size_t)n;
			if (!peek) {
				s->rx_pending += (uint64_t)n;
				ivs_count(IVS_C_RX_BYTES, (uint64_t)n);
				atomic_fetch_add_explicit(&s->event_seq, 1, memory_order_relaxed);
				if (ivsock_ring_producer_needs_wake(&s->v.rx) && st == IVS_ST_CONNECTED)
					ivs_ring_peer(s);
				if (s->rx_pending >= (1U << 20)) {
					ivsock_chan_count(NULL, &s->v, 0, s->rx_pending);
					s->rx_pending = 0;
				}
			}
			if (!waitall || got == total) {
				rc = (ssize_t)got;
				break;
			}
			continue;
		}
		if ((n == 0 || n == -EAGAIN) && st == IVS_ST_CONNECTED && ivs_rx_on_tcp(s)) {
			/* the peer's stream went on TCP where we now are */
			pthread_mutex_unlock(&s->rx_lock);
			ivs_switch_progress(s, fd, 0, false);
			if (!got && iovcnt <= IOV_MAX_SHIM)
				return IVS_PASS;
			/* The rest from the kernel, maybe blocking (MSG_WAITALL):
			 * counted in kbusy, as a promotable socket's call, so
			 * that the channel released above is not promoted
			 * while we wait there (we would read the bytes after
			 * the next ring as if they came before it). A
			 * promotion that came first: look again. */
			if (!ivs_promo_enter(s)) {
				pthread_mutex_lock(&s->rx_lock);
				continue;
			}
			if (atomic_load(&s->state) == IVS_ST_CONNECTED && atomic_load(&s->prx)) {
				atomic_fetch_sub(&s->kbusy, 1);
				pthread_mutex_lock(&s->rx_lock);
				continue;
			}
			rc = kernel_rest(fd, iov, iovcnt, got, flags | (dontwait ? MSG_DONTWAIT : 0),
					 false, waitall && !dontwait);
			atomic_fetch_sub(&s->kbusy, 1);
			return rc;
		}
		if (n == 0) { /* EOF */
			flush_rx_count(s);
			rc = (ssize_t)got;
			break;
		}
		if (n != -EAGAIN) { /* reset or corrupt peer */
			rc = got ? (ssize_t)got : n == -ECONNRESET ? reset_or_eof(s) : -ECONNRESET;
			break;
		}
		/* empty */
		flush_rx_count(s);
		if (st == IVS_ST_CONNECTED && atomic_load(&s->demote) && !atomic_load(&s->tx_tcp) &&
		    ivs_switch_ours(s)) {
			/* a reader switches its tx too, without waiting to write */
			pthread_mutex_unlock(&s->rx_lock);
			ivs_switch_progress(s, fd, 0, false);
			pthread_mutex_lock(&s->rx_lock);
			continue;
		}
		if (st == IVS_ST_CONNECTED && peer_dead(s)) {
			rc = got ? (ssize_t)got : reset_or_eof(s);
			break;
		}
		if (st == IVS_ST_CONNECTED && atomic_load(&s->kfin) && !got && iovcnt > 0 &&
		    !(ivsock_ring_peer_flags(&s->v.rx) & IVSOCK_RING_EOF)) {
			/* the peer's kernel socket closed without a ring end of
			 * stream: what the kernel socket holds, then EOF/reset */
			n = ivs_rc.recv(fd, iov[0].iov_base, iov[0].iov_len,
					MSG_DONTWAIT | (peek ? MSG_PEEK : 0));
			if (n > 0 || (n < 0 && errno != EAGAIN)) {
				rc = n > 0 ? n : -errno;
				break;
			}
			if (n == 0 && ivsock_ring_readable(&s->v.rx) == 0) {
				rc = reset_or_eof(s);
				break;
			}
		}
		if (dontwait) {
			int why = st == IVS_ST_OFFERED ? offer_trigger(s, fd) : 0;

			if (why) {
				pthread_mutex_unlock(&s->rx_lock);
				ivs_conn_fallback(s, fd, (enum ivs_counter)why);
				pthread_mutex_lock(&s->rx_lock);
				continue;
			}
			rc = got ? (ssize_t)got : -EAGAIN;
			break;
		}
		/* A handler that ran while we spun or between two sleeps must
		 * interrupt us as it would a blocked kernel recv(): the
		 * program's loop (e.g. a timer's flag) depends on it. */
		if (ivs_sig_ran(&sm)) {
			if (!got && !deadline && ivs_sig_restartable(&sm)) {
				ivs_sig_mark(&sm);
			} else {
				rc = got ? (ssize_t)got : -EINTR;
				break;
			}
		}
		now = ivs_now_ns();
		if (!spun) {
			spun = true;
			spin_len = spin_budget(&tl_rx_spin);
			spin_end = now + spin_len;
		}
		if (now < spin_end) {
			spin_step(now, spin_end, spin_len, &csw);
			continue;
		}
		if (!slept) {
			slept = true;
			spin_lost(&tl_rx_spin);
		}
		if (deadline && now >= deadline) {
			rc = got ? (ssize_t)got : -EAGAIN;
			break;
		}
		if (ivsock_ring_consumer_prepare_sleep(&s->v.rx) <= 0)
			continue;
		if (st == IVS_ST_OFFERED && attach_overdue(s)) {
			pthread_mutex_unlock(&s->rx_lock);
			ivs_conn_fallback(s, fd, IVS_C_FB_TIMEOUT);
			pthread_mutex_lock(&s->rx_lock);
			continue;
		}
		n = ivs_sleep(fd, st == IVS_ST_OFFERED ? offer_kev(s) : POLLIN | POLLRDHUP,
			      deadline_ms(deadline, now), &rev);
		if (n == -EINTR) {
			/* like the kernel: restart unless a timeout is set */
			if (!got && !deadline && ivs_sig_restartable(&sm)) {
				ivs_sig_mark(&sm);
				continue;
			}
			rc = got ? (ssize_t)got : -EINTR;
			break;
		}
		if (!rev)
			continue;
		if (st == IVS_ST_OFFERED) {
			/* The server spoke TCP, hung up or refused: not shimmed. */
			int why = offer_kernel_reason(s, rev);

			if (why) {
				pthread_mutex_unlock(&s->rx_lock);
				ivs_conn_fallback(s, fd, (enum ivs_counter)why);
				pthread_mutex_lock(&s->rx_lock);
			}
			continue;
		}
		/* CONNECTED and the kernel socket moved: the peer's kernel socket
		 * was closed (process gone) or a process that does not know the
		 * channel (exec'd image) wrote TCP. Drain the ring first. */
		if (ivsock_ring_readable(&s->v.rx) != 0 ||
		    (ivsock_ring_peer_flags(&s->v.rx) & (IVSOCK_RING_EOF | IVSOCK_RING_RESET)))
			continue;
		if (!got && iovcnt > 0) {
			n = ivs_rc.recv(fd, iov[0].iov_base, iov[0].iov_len,
					MSG_DONTWAIT | (peek ? MSG_PEEK : 0));
			if (n == 0) { /* FIN: every holder of the peer is gone */
				rc = reset_or_eof(s);
				break;
			}
			if (n > 0) {
				rc = n;
				break;
			}
			if (errno != EAGAIN) {
				rc = -errno;
				break;
			}
		}
		if (rev & (POLLERR | POLLHUP)) {
			rc = got ? (ssize_t)got : -ECONNRESET;
			break;
		}
		if (got) {
			rc = (ssize_t)got;
			break;
		}
	}
	pthread_mutex_unlock(&s->rx_lock);
	return rc;
}

/*
 * A blocking writer that finds both rings full and nothing moving for
 * STALL_SWITCH_NS: it waits for the peer to read while the peer, its own
 * ring full of bytes for us, waits for us to read (a program that writes
 * more before it reads than two rings hold, where TCP's larger buffers
 * would have carried it). Our tx then moves to TCP (docs/switch.md; the
 * peer follows and the channel is released): the program goes on as on
 * TCP. @return true when the switch is due.
 */
#define STALL_SWITCH_NS (100ULL * 1000000)

/* No thread of ours is reading this socket now: a full rx ring with a
 * reader inside ivs_recv (it holds the rx lock while it copies) is a
 * reader that was not scheduled, not a program that writes before it
 * reads. Looked at only by a writer that waits on full rings. */
static bool rx_idle(struct ivs_sock *s)
{
	if (pthread_mutex_trylock(&s->rx_lock))
		return false;
	pthread_mutex_unlock(&s->rx_lock);
	return true;
}

static bool write_stalled(struct ivs_sock *s, uint64_t *since, uint64_t now)
{
	/* where the peer is: its head in our tx ring, its tail in our rx
	 * ring; a slow peer that still moves is not a stall (a guest under
	 * emulation keeps both rings full while it works through them) */
	uint64_t mark = (uint64_t)ivsock_load_acquire(&s->v.tx.c->head) << 32 |
			ivsock_load_acquire(&s->v.rx.p->tail);

	if (ivsock_ring_snap_readable(&s->v.rx) != (long)s->v.rx.size ||
	    atomic_load(&s->tx_tcp) || atomic_load(&s->demote) || !ivs_switch_ours(s) ||
	    !rx_idle(s)) {
		*since = 0;
		return false;
	}
	if (!*since || mark != atomic_load_explicit(&s->stall_mark, memory_order_relaxed)) {
		*since = now;
		atomic_store_explicit(&s->stall_mark, mark, memory_order_relaxed);
		return false;
	}
	return now - *since >= STALL_SWITCH_NS;
}

/* The stall is due: move our tx to TCP (the peer follows). */
static void stall_switch(struct ivs_sock *s)
{
	atomic_store(&s->demote, IVSOCK_SWITCH_WHY_STALLED);
	atomic_store_explicit(&s->nb_stall_ns, 0, memory_order_relaxed);
	atomic_fetch_add(&s->event_seq, 1);
	ivs_count(IVS_C_SWITCH_STALL, 1);
	ivs_debug("channel %u: both rings full for 100 ms: tx moves to TCP", s->v.idx);
}

/*
 * A non-blocking writer (an event loop) gets EAGAIN on a full ring and
 * waits for POLLOUT in a multiplexer, where ivs_send never sees how long:
 * its first EAGAIN with both rings full is remembered (nb_stall_ns), and
 * the multiplexer's arm for POLLOUT looks again in 10 ms slices; 100 ms
 * later, both rings still full and nothing moved, the switch is made there.
 * @return true when it was made now.
 */
static bool nb_write_stalled(struct ivs_sock *s)
{
	uint64_t since = atomic_load_explicit(&s->nb_stall_ns, memory_order_relaxed);

	if (!since)
		return false;
	if (ivsock_ring_snap_unconsumed(&s->v.tx) < (long)s->v.tx.size) {
		/* room: the writer's POLLOUT is due, nothing is stuck */
		atomic_store_explicit(&s->nb_stall_ns, 0, memory_order_relaxed);
		return false;
	}
	if (!write_stalled(s, &since, ivs_now_ns())) {
		if (!since) /* the peer reads now, or a switch is under way */
			atomic_store_explicit(&s->nb_stall_ns, 0, memory_order_relaxed);
		else
			mux_arm_slice = true; /* look again before the 100 ms are up */
		return false;
	}
	stall_switch(s);
	return true;
}

/* EPIPE; SIGPIPE is raised by ivs_send after dropping its lock. */
static ssize_t epipe(int flags)
{
	(void)flags;
	return -EPIPE;
}

ssize_t ivs_send(struct ivs_sock *s, int fd, const struct iovec *iov, int iovcnt, int flags)
{
	bool dontwait = (flags & MSG_DONTWAIT) || atomic_load(&s->nonblock);
	size_t total = iov_total(iov, iovcnt), sent = 0;
	uint64_t deadline = 0, spin_end = 0, now, stall_since = 0;
	ssize_t rc = 0, n;
	struct ivs_sigmark sm;
	uint64_t spin_len = 0;
	bool spun = false, slept = false, full = false;
	long csw = -1; /* involuntary switches at the first yield */
	short rev;
	int st = 0;

	if (flags & MSG_OOB)
		return -EOPNOTSUPP;
	if (s->shut_wr) {
		if (!(flags & MSG_NOSIGNAL))
			raise(SIGPIPE);
		return -EPIPE;
	}
	if (total == 0)
		return 0;
	if (s->sndtimeo_ms && !dontwait)
		deadline = ivs_now_ns() + (uint64_t)s->sndtimeo_ms * 1000000;
	ivs_sig_mark(&sm);
	pthread_mutex_lock(&s->tx_lock);
	for (;;) {
		if (atomic_load(&s->closed) && atomic_load(&s->state) != IVS_ST_PLAIN) {
			rc = sent ? (ssize_t)sent : -EBADF;
			break;
		}
		st = atomic_load(&s->state);
		if (st == IVS_ST_PLAIN) {
			/* fell back or switched mid-call: the rest goes on TCP */
			rc = sent ? kernel_rest(fd, iov, iovcnt, sent, flags | (dontwait ? MSG_DONTWAIT : 0),
						true, !dontwait) : IVS_PASS;
			break;
		}
		ivs_sock_refresh(s);
		if (st == IVS_ST_OFFERED && ivs_conn_check_attached(s) == -ESTALE) {
			pthread_mutex_unlock(&s->tx_lock);
			ivs_conn_fallback(s, fd, IVS_C_FB_ABANDONED);
			pthread_mutex_lock(&s->tx_lock);
			continue;
		}
		if (st == IVS_ST_CONNECTED && ivs_chan_revoked(s)) {
			rc = sent ? (ssize_t)sent : revoked_rc(s, true);
			break;
		}
		if (st == IVS_ST_CONNECTED && atomic_load(&s->demote) && !atomic_load(&s->tx_tcp) &&
		    ivs_switch_ours(s)) {
			pthread_mutex_unlock(&s->tx_lock);
			ivs_switch_progress(s, fd, 0, false);
			pthread_mutex_lock(&s->tx_lock);
			continue;
		}
		if (st == IVS_ST_CONNECTED && atomic_load(&s->ptx)) {
			/* promoted: our tx moves to the ring once the peer
			 * reads it; until then the kernel socket, under our
			 * lock (the kernel's count must be exact when we move) */
			ivs_promo_tx(s, fd);
			if (atomic_load(&s->ptx)) {
				rc = kernel_rest(fd, iov, iovcnt, sent,
						 flags | (dontwait ? MSG_DONTWAIT : 0), true, !dontwait);
				break; /* (SIGPIPE for EPIPE below) */
			}
			continue;
		}
		if (st == IVS_ST_CONNECTED && atomic_load(&s->tx_tcp)) {
			if (ivs_switch_ours(s) && ivs_rx_on_tcp(s)) {
				/* both directions are on TCP: let go of the rings */
				pthread_mutex_unlock(&s->tx_lock);
				ivs_switch_progress(s, fd, 0, false);
				pthread_mutex_lock(&s->tx_lock);
				if (atomic_load(&s->state) == IVS_ST_PLAIN)
					continue;
			}
			/* our stream continues on the kernel socket */
			rc = sent || iovcnt > IOV_MAX_SHIM ?
				kernel_rest(fd, iov, iovcnt, sent, flags | (dontwait ? MSG_DONTWAIT : 0),
					    true, !dontwait) : IVS_PASS;
			break;
		}
		n = ring_iov(&s->v.tx, iov, iovcnt, sent, 2);
		if (n > 0) {
			if (spun && !slept)
				spin_result(&tl_tx_spin, ivs_now_ns() - (spin_end - spin_len), csw);
			sent += (size_t)n;
			stall_since = 0;
			if (atomic_load_explicit(&s->nb_stall_ns, memory_order_relaxed))
				atomic_store_explicit(&s->nb_stall_ns, 0, memory_order_relaxed);
			s->tx_pending += (uint64_t)n;
			ivs_count(IVS_C_TX_BYTES, (uint64_t)n);
			if (ivsock_ring_consumer_needs_wake(&s->v.tx)) {
				if (st == IVS_ST_OFFERED)
					ivs_conn_check_attached(s);
				if (atomic_load(&s->state) == IVS_ST_CONNECTED)
					ivs_ring_peer(s);
			}
			if (s->tx_pending >= (1U << 20)) {
				ivsock_chan_count(NULL, &s->v, s->tx_pending, 0);
				s->tx_pending = 0;
			}
			if (sent == total || dontwait) {
				rc = (ssize_t)sent;
				break;
			}
			continue;
		}
		if (n < 0) {
			if (sent) {
				rc = (ssize_t)sent;
			} else if (n == -EPIPE) {
				rc = peer_dead(s) ? -ECONNRESET : epipe(flags);
			} else {
				rc = -ECONNRESET;
			}
			break;
		}
		/* ring full */
		full = true;
		ivs_flush_tx_count(s);
		if (st == IVS_ST_CONNECTED && (peer_dead(s) || peer_kernel_gone(s))) {
			if (!peer_dead(s))
				ivs_count(IVS_C_RESET_PEER_GONE, 1);
			rc = sent ? (ssize_t)sent : -ECONNRESET;
			break;
		}
		if (dontwait) {
			int why = st == IVS_ST_OFFERED ? offer_trigger(s, fd) : 0;

			if (why) {
				pthread_mutex_unlock(&s->tx_lock);
				ivs_conn_fallback(s, fd, (enum ivs_counter)why);
				pthread_mutex_lock(&s->tx_lock);
				continue;
			}
			if (st == IVS_ST_CONNECTED && !sent) {
				/* remembered for the multiplexer (nb_write_stalled) */
				uint64_t since = atomic_load_explicit(&s->nb_stall_ns,
								      memory_order_relaxed);

				if (write_stalled(s, &since, ivs_now_ns())) {
					stall_switch(s);
					continue;
				}
				atomic_store_explicit(&s->nb_stall_ns, since, memory_order_relaxed);
			}
			rc = sent ? (ssize_t)sent : -EAGAIN;
			break;
		}
		/* As in the receive path: a handler that ran outside the sleep
		 * syscall still interrupts a blocked send(). */
		if (ivs_sig_ran(&sm)) {
			if (!sent && !deadline && ivs_sig_restartable(&sm)) {
				ivs_sig_mark(&sm);
			} else {
				rc = sent ? (ssize_t)sent : -EINTR;
				break;
			}
		}
		now = ivs_now_ns();
		if (st == IVS_ST_CONNECTED && write_stalled(s, &stall_since, now)) {
			stall_switch(s);
			continue;
		}
		if (!spun) {
			spun = true;
			spin_len = spin_budget(&tl_tx_spin);
			spin_end = now + spin_len;
		}
		if (now < spin_end) {
			spin_step(now, spin_end, spin_len, &csw);
			continue;
		}
		if (!slept) {
			slept = true;
			spin_lost(&tl_tx_spin);
		}
		if (deadline && now >= deadline) {
			rc = sent ? (ssize_t)sent : -EAGAIN;
			break;
		}
		n = ivsock_ring_producer_prepare_sleep(&s->v.tx);
		if (n == 0)
			continue;
		if (n < 0) {
			rc = sent ? (ssize_t)sent : (n == -EPIPE ? epipe(flags) : -ECONNRESET);
			break;
		}
		if (st == IVS_ST_OFFERED && attach_overdue(s)) {
			pthread_mutex_unlock(&s->tx_lock);
			ivs_conn_fallback(s, fd, IVS_C_FB_TIMEOUT);
			pthread_mutex_lock(&s->tx_lock);
			continue;
		}
		/* Connected: the kernel socket's hang-up too (no wait may ignore
		 * the liveness of the kernel connection), unless the peer shut
		 * down its writing half (its FIN is then no news). */
		n = ivs_sleep(fd, st == IVS_ST_OFFERED ? offer_kev(s) :
			      (ivsock_ring_peer_flags(&s->v.rx) & IVSOCK_RING_EOF) ? 0 : POLLRDHUP,
			      deadline_ms(deadline, now), &rev);
		if (n == -EINTR) {
			if (!sent && !deadline && ivs_sig_restartable(&sm)) {
				ivs_sig_mark(&sm);
				continue;
			}
			rc = sent ? (ssize_t)sent : -EINTR;
			break;
		}
		if (rev && st == IVS_ST_OFFERED) {
			int why = offer_kernel_reason(s, rev);

			if (why) {
				pthread_mutex_unlock(&s->tx_lock);
				ivs_conn_fallback(s, fd, (enum ivs_counter)why);
				pthread_mutex_lock(&s->tx_lock);
			}
			continue;
		}
		if (rev & (POLLRDHUP | POLLHUP | POLLERR)) {
			/* sticky: poll reports it too; the ring-full check above
			 * answers ECONNRESET unless it was a half-close */
			if (!atomic_exchange(&s->kfin, 1))
				atomic_fetch_add(&s->event_seq, 1);
			if (!(rev & (POLLHUP | POLLERR)))
				continue;
		}
		if (rev & (POLLERR | POLLHUP)) {
			rc = sent ? (ssize_t)sent : -ECONNRESET;
			break;
		}
	}
	if (ivs_cfg.ring_grow && st == IVS_ST_CONNECTED && rc != IVS_PASS)
		ivs_policy_tx(s, sent, full);
	pthread_mutex_unlock(&s->tx_lock);
	if (rc == -EPIPE && !(flags & MSG_NOSIGNAL))
		raise(SIGPIPE);
	return rc;
}

/* ---------------- readiness for the multiplexers (shim.h) ---------------- */

/* A switch to TCP is wanted or under way (either direction). */
static bool switching(struct ivs_sock *s)
{
	return atomic_load_explicit(&s->demote, memory_order_relaxed) ||
	       atomic_load_explicit(&s->tx_tcp, memory_order_relaxed) ||
	       atomic_load_explicit(&s->ptx, memory_order_relaxed) ||
	       atomic_load_explicit(&s->prx, memory_order_relaxed) ||
	       (ivsock_load_acquire(&s->v.peer_ctl->tx_switch) & IVSOCK_SWITCH_TCP);
}

unsigned ivs_sock_poll(struct ivs_sock *s, unsigned events)
{
	unsigned ev = 0, kev = 0;
	bool rxt = false, txt = false;
	uint32_t pf, cf;
	long rxn, txu;
	int st = atomic_load(&s->state);

	if (st == IVS_ST_OFFERED) {
		int why = ivs_conn_check_attached(s) == -ESTALE ? IVS_C_FB_ABANDONED : 0;

		if (!why && s->kfd >= 0)
			why = offer_trigger(s, s->kfd);
		if (why) {
			ivs_in_mux = 1;
			ivs_conn_fallback(s, s->kfd, (enum ivs_counter)why);
			ivs_in_mux = 0;
		}
		st = atomic_load(&s->state);
	}
	/* released by another thread right now (both directions on TCP):
	 * the kernel socket's readiness, not the freed slot's */
	if (st == IVS_ST_PLAIN || atomic_load(&s->let_go)) {
		struct pollfd p = { .fd = s->kfd, .events = (short)events };

		if (s->kfd >= 0 && ivs_real.poll(&p, 1, 0) > 0)
			return (unsigned)p.revents;
		return 0;
	}
	/* Revoked or reused under us: what a kernel reset reports. */
	if (st == IVS_ST_CONNECTED && ivs_chan_revoked(s))
		return (POLLIN | POLLOUT | POLLERR | POLLHUP) & (events | POLLERR | POLLHUP);
	if (st == IVS_ST_CONNECTED && switching(s)) {
		/* a direction on TCP: its readiness is the kernel socket's */
		ivs_in_mux = 1;
		if (ivs_switch_progress(s, s->kfd, 0, true)) {
			ivs_in_mux = 0;
			return kernel_now(s->kfd, (short)events);
		}
		ivs_in_mux = 0;
		rxt = atomic_load(&s->prx) || ivs_rx_on_tcp(s);
		txt = atomic_load(&s->tx_tcp) || atomic_load(&s->ptx);
		if (rxt || txt)
			kev = (unsigned)kernel_now(s->kfd, (short)(events | POLLRDHUP));
	}
	/* Safe from any thread: our own indices come from the private views
	 * (atomic mirrors), never read back from shared memory, where anyone
	 * mapping the region may have scribbled; the peer's are validated (a
	 * corrupt one makes the socket readable and writable: the call then
	 * reports the reset). */
	rxn = ivsock_ring_snap_readable(&s->v.rx);
	pf = ivsock_ring_peer_flags(&s->v.rx);
	if (!rxt && st == IVS_ST_CONNECTED && (pf & IVSOCK_RING_EOF) && ivs_rx_on_tcp(s)) {
		/* The peer switched and let go of the channel since we looked
		 * above: the end of stream its agent then set on the ring is
		 * not the stream's (it reads as readable with nothing there);
		 * the rest of the stream is the kernel socket's. */
		rxt = true;
		if (!txt)
			kev = (unsigned)kernel_now(s->kfd, (short)(events | POLLRDHUP));
	}
	if (rxn != 0 || (pf & IVSOCK_RING_EOF) || s->shut_rd)
		ev |= POLLIN;
	if (pf & IVSOCK_RING_EOF)
		ev |= POLLRDHUP;
	if (pf & IVSOCK_RING_RESET)
		ev |= POLLIN | POLLERR | POLLHUP;
	txu = ivsock_ring_snap_unconsumed(&s->v.tx);
	cf = ivsock_ring_cons_flags(&s->v.tx);
	if (txu < (long)s->v.tx.size)
		ev |= POLLOUT;
	/* A peer that closed is only a FIN to TCP (POLLIN|POLLRDHUP, and
	 * writable: the write is what fails); POLLHUP needs our side shut
	 * down too, or a reset. */
	if (cf & IVSOCK_RING_RCLOSED)
		ev |= POLLOUT;
	if (st == IVS_ST_CONNECTED && peer_dead(s))
		ev |= POLLIN | POLLOUT | POLLERR | POLLHUP;
	if (st == IVS_ST_CONNECTED && peer_kernel_gone(s)) {
		ev |= POLLIN | POLLRDHUP; /* the peer's kernel socket is gone */
		/* ... with bytes of ours unread: TCP would have reset */
		if (txu != 0)
			ev |= POLLOUT | POLLERR | POLLHUP;
	}
	if (s->shut_wr && (pf & IVSOCK_RING_EOF))
		ev |= POLLHUP;
	if (rxt) {
		ev &= ~(unsigned)(POLLIN | POLLRDHUP | POLLHUP);
		ev |= kev & (POLLIN | POLLRDHUP | POLLHUP | POLLERR);
	}
	if (txt) {
		ev &= ~(unsigned)POLLOUT;
		ev |= kev & (POLLOUT | POLLHUP | POLLERR);
	}
	return ev & (events | POLLERR | POLLHUP);
}

static unsigned arm(struct ivs_sock *s, unsigned events, bool liveness);

unsigned ivs_sock_arm(struct ivs_sock *s, unsigned events)
{
	return arm(s, events, true);
}

unsigned ivs_sock_arm_quiet(struct ivs_sock *s, unsigned events)
{
	return arm(s, events, false);
}

bool ivs_sock_may_fall_back(struct ivs_sock *s)
{
	return atomic_load(&s->state) == IVS_ST_OFFERED;
}

static unsigned arm(struct ivs_sock *s, unsigned events, bool liveness)
{
	unsigned ev = ivs_sock_poll(s, events);

	if (ev || atomic_load(&s->state) == IVS_ST_PLAIN)
		return ev;
	if ((events & POLLOUT) && atomic_load(&s->state) == IVS_ST_CONNECTED &&
	    nb_write_stalled(s))
		return ivs_sock_poll(s, events); /* tx on TCP now */
	/* Mid-switch, a direction's readiness comes from the kernel socket,
	 * whose arrivals ring no doorbell: sleep in short slices (the switch
	 * completes on the next call; it only lingers for an end shared with
	 * another process). */
	if (atomic_load(&s->state) == IVS_ST_CONNECTED && switching(s))
		mux_arm_slice = true;
	/* Liveness: the kernel socket moved while the ring is quiet (the peer's
	 * kernel socket closed without a ring end of stream, or a process
	 * without the shim wrote TCP): report readable, the read path sorts
	 * it out (drains the ring, then reads the kernel socket). */
	/* Every waiter, a writer waiting for space included: a peer gone
	 * while our ring is full must wake it (finding: POLLOUT waiters never
	 * noticed a vanished peer). */
	if (liveness && atomic_load(&s->state) == IVS_ST_CONNECTED &&
	    (events & (POLLIN | POLLRDHUP | POLLOUT)) && s->kfd >= 0 &&
	    !atomic_load_explicit(&s->kfin, memory_order_relaxed)) {
		struct pollfd p = { .fd = s->kfd, .events = POLLIN | POLLRDHUP };

		if (ivs_real.poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR))) {
			/* sticky: ivs_sock_poll reports it too */
			if (!atomic_exchange(&s->kfin, 1))
				atomic_fetch_add(&s->event_seq, 1);
			return ivs_sock_poll(s, events);
		}
	}
	if ((events & (POLLIN | POLLRDHUP)) && pthread_mutex_trylock(&s->rx_lock) == 0) {
		ivs_sock_refresh(s);
		ivsock_ring_consumer_prepare_sleep(&s->v.rx);
		pthread_mutex_unlock(&s->rx_lock);
	}
	if ((events & POLLOUT) && pthread_mutex_trylock(&s->tx_lock) == 0) {
		ivs_sock_refresh(s);
		ivsock_ring_producer_prepare_sleep(&s->v.tx);
		pthread_mutex_unlock(&s->tx_lock);
	}
	return ivs_sock_poll(s, events);
}

uint64_t ivs_sock_event_seq(struct ivs_sock *s)
{
	/* Only words the other side writes (its index and flags), each read
	 * once; our own indices move only through our calls, which bump
	 * event_seq themselves. */
	uint64_t a = ivsock_load_acquire(&s->v.rx.p->tail);
	uint64_t b = ivsock_load_acquire(&s->v.tx.c->head);
	uint64_t f = ivsock_ring_peer_flags(&s->v.rx) |
		     (uint64_t)ivsock_ring_cons_flags(&s->v.tx) << 4;

	return (a << 32 | b) + (f << 60) + atomic_load(&s->event_seq) * 0x9e3779b97f4a7c15ULL;
}

unsigned ivs_sock_kernel_events(struct ivs_sock *s)
{
	/* OFFERED: anything from the server means it is not shimmed.
	 * CONNECTED: a FIN without a ring end of stream (see ivs_sock_arm). */
	return atomic_load(&s->state) == IVS_ST_OFFERED ? (unsigned)offer_kev(s) : POLLRDHUP;
}

unsigned ivs_sock_kernel_io(struct ivs_sock *s)
{
	unsigned io = 0;
	int st = atomic_load(&s->state);

	if (st == IVS_ST_PLAIN)
		return POLLIN | POLLOUT;
	if (st != IVS_ST_CONNECTED || !switching(s))
		return 0;
	/* rx: once on TCP, or about to be (the peer's switch is wanted: its
	 * bytes may arrive on TCP once it has switched) */
	if (ivs_rx_on_tcp(s) || atomic_load(&s->demote) || atomic_load(&s->prx))
		io |= POLLIN;
	if (atomic_load(&s->tx_tcp) || atomic_load(&s->ptx))
		io |= POLLOUT;
	return io;
}
