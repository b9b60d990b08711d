// SPDX-License-Identifier: MIT
/*
 * poll, ppoll, select and pselect for sets that hold accelerated sockets:
 * their readiness comes from the rings (the kernel socket would always say
 * writable and never readable) while plain fds keep the kernel's answer.
 * A set without accelerated fds costs one table lookup per fd.
 */
#include <errno.h>
#include <sched.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>

#include "ivsock/barrier.h"
#include "mux.h"

enum { K_PLAIN, K_ACC, K_NESTED };

/* Provided by the socket core; weak until it does (see shim.h). */
extern unsigned ivs_sock_kernel_events(struct ivs_sock *s) __attribute__((weak));
extern unsigned ivs_sock_kernel_io(struct ivs_sock *s) __attribute__((weak));
extern bool ivs_sock_may_fall_back(struct ivs_sock *s) __attribute__((weak));
extern struct ivs_sock *ivs_sock_kernel_enter(int fd, bool *again) __attribute__((weak));
extern void ivs_sock_kernel_leave(struct ivs_sock *tcp) __attribute__((weak));
extern bool ivs_sock_promotable(int fd) __attribute__((weak));

/* What one call works with; small sets live on the stack. */
struct pset {
	struct pollfd *fds;
	nfds_t nfds;
	unsigned char *kind;       /* K_* per entry */
	unsigned char *dropped;    /* liveness of an acc fd no longer watched */
	struct ivs_sock **socks;   /* K_ACC entries */
	struct pollfd *kfds;       /* what the kernel sees: nfds + wake fds */
	bool any_plain;
};

#define PSET_STACK 16

static __thread struct mux_spin tl_spin = { UINT32_MAX, 0, 63, false };


static inline unsigned req_bits(short events)
{
	unsigned e = (unsigned short)events;

	if (e & POLLRDNORM)
		e |= POLLIN;
	if (e & POLLWRNORM)
		e |= POLLOUT;
	return e & MUX_POLL_BITS;
}

/* revents of accelerated socket s for the caller's events (`r` from the core:
 * POLLIN/POLLOUT/POLLRDHUP/POLLHUP/POLLERR). */
static inline short acc_revents(short events, unsigned r)
{
	unsigned e = (unsigned short)events;
	unsigned out = r & (e | POLLERR | POLLHUP);

	if ((r & POLLIN) && (e & POLLRDNORM))
		out |= POLLRDNORM;
	if ((r & POLLOUT) && (e & POLLWRNORM))
		out |= POLLWRNORM;
	return (short)out;
}

/* Ring readiness of the special entries into fds[].revents; @return count. */
static int pset_scan(struct pset *p)
{
	int n = 0;

	for (nfds_t i = 0; i < p->nfds; i++) {
		struct pollfd *f = &p->fds[i];

		if (p->kind[i] == K_ACC) {
			f->revents = acc_revents(f->events,
						 ivs_sock_poll(p->socks[i], req_bits(f->events)));
		} else if (p->kind[i] == K_NESTED) {
			f->revents = (f->events & POLLIN) && mux_ep_peek(f->fd) ?
				     (f->events & (POLLIN | POLLRDNORM)) : 0;
		} else {
			continue;
		}
		n += f->revents != 0;
	}
	return n;
}

/* Arm every special entry; @return true when one became ready meanwhile. */
static bool pset_arm(struct pset *p)
{
	bool ready = false;

	for (nfds_t i = 0; i < p->nfds; i++) {
		struct pollfd *f = &p->fds[i];

		if (p->kind[i] == K_ACC) {
			unsigned r = ivs_sock_arm(p->socks[i], req_bits(f->events));

			if (acc_revents(f->events, r))
				ready = true;
		} else if (p->kind[i] == K_NESTED) {
			if (mux_ep_arm(f->fd) && (f->events & POLLIN))
				ready = true;
		}
	}
	return ready;
}

static struct timespec *ns_to_ts(int64_t ns, struct timespec *ts)
{
	if (ns == INT64_MAX)
		return NULL;
	ts->tv_sec = ns / 1000000000LL;
	ts->tv_nsec = ns % 1000000000LL;
	return ts;
}

/*
 * Kernel answer for the plain entries (nested epoll fds included: their
 * plain members count), without waiting, merged with the special entries'
 * revents already in fds[]. @return the number of ready entries or -1.
 */
static int pset_finish(struct pset *p)
{
	struct timespec zero = { 0, 0 };
	int n = 0;

	if (p->any_plain) {
		for (nfds_t i = 0; i < p->nfds; i++) {
			p->kfds[i] = p->fds[i];
			if (p->kind[i] == K_ACC)
				p->kfds[i].fd = -1;
			p->kfds[i].revents = 0;
		}
		if (ivs_real.ppoll(p->kfds, p->nfds, &zero, NULL) < 0)
			return -1;
	}
	for (nfds_t i = 0; i < p->nfds; i++) {
		struct pollfd *f = &p->fds[i];

		if (p->kind[i] == K_PLAIN)
			f->revents = p->any_plain ? p->kfds[i].revents : 0;
		else if (p->kind[i] == K_NESTED)
			f->revents |= p->kfds[i].revents;
		n += f->revents != 0;
	}
	return n;
}

/* Sleep in the kernel on plain entries, liveness of the acc entries and the
 * wake fds wk[nw] (from mux_sleep_begin(), ended here). @return >0 if a
 * plain entry fired, 0, or -1 (errno). */
static int pset_sleep(struct pset *p, uint64_t deadline, const sigset_t *sigmask,
		      struct pollfd *wk, int nw, int *nval)
{
	int64_t left = mux_remaining(deadline);
	nfds_t k = p->nfds;
	struct timespec ts;
	int r, hit = 0, err;

	if (nw == 0 && left > (int64_t)MUX_NOWAKE_SLICE_NS)
		left = MUX_NOWAKE_SLICE_NS;
	if (mux_arm_slice && left > (int64_t)MUX_EDGE_SLICE_NS)
		left = MUX_EDGE_SLICE_NS; /* a nested set's edge-triggered entry */
	for (nfds_t i = 0; i < p->nfds; i++) {
		p->kfds[i] = p->fds[i];
		p->kfds[i].revents = 0;
		if (p->kind[i] == K_ACC) {
			/* The kernel socket of a channel only tells liveness:
			 * watch HUP/ERR as a hint, the ring has the truth. A
			 * connector still waiting for its acceptor also needs
			 * its kernel socket's data (it may fall back). */
			unsigned ke = ivs_sock_kernel_events ?
				      ivs_sock_kernel_events(p->socks[i]) : 0;

			/* slices only for a connector that may fall back (its
			 * attach deadline); liveness is in the sleep set */
			if (ke && (ivs_sock_may_fall_back ? ivs_sock_may_fall_back(p->socks[i]) : true) &&
			    left > (int64_t)MUX_OFFER_SLICE_NS)
				left = MUX_OFFER_SLICE_NS;
			/* directions a path switch moved to TCP: the kernel's
			 * readiness is theirs (no doorbell rings for it) */
			if (ivs_sock_kernel_io)
				ke |= ivs_sock_kernel_io(p->socks[i]) &
				      (unsigned)p->fds[i].events & (POLLIN | POLLOUT);
			p->kfds[i].events = (short)ke;
			if (p->dropped[i])
				p->kfds[i].fd = -1;
		}
	}
	for (int i = 0; i < nw; i++)
		p->kfds[k++] = wk[i];
	r = ivs_real.ppoll(p->kfds, k, ns_to_ts(left, &ts), sigmask);
	err = errno;
	for (int i = 0; i < nw; i++)
		wk[i].revents = r > 0 ? p->kfds[p->nfds + (nfds_t)i].revents : 0;
	mux_sleep_end(wk, nw);
	if (r < 0) {
		errno = err;
		return -1;
	}
	for (nfds_t i = 0; i < p->nfds; i++) {
		short re = p->kfds[i].revents;

		if (!re)
			continue;
		if (p->kind[i] != K_ACC) {
			hit = 1;
		} else if (re & POLLNVAL) {
			/* closed under us by another thread, as the kernel says */
			p->fds[i].revents = POLLNVAL;
			(*nval)++;
			p->dropped[i] = 1;
		} else {
			p->dropped[i] = 1;
		}
	}
	return hit;
}

/* A connector whose acceptor never attached falls back to plain TCP: from
 * then on its kernel socket is the truth. */
static void pset_reclassify(struct pset *p)
{
	for (nfds_t i = 0; i < p->nfds; i++) {
		struct ivs_sock *s;

		if (p->kind[i] != K_ACC || p->fds[i].revents == POLLNVAL)
			continue;
		s = ivs_sock_get(p->fds[i].fd);
		if (s) {
			ivs_sock_put(s);
			continue;
		}
		ivs_sock_put(p->socks[i]);
		p->socks[i] = NULL;
		p->kind[i] = K_PLAIN;
		p->any_plain = true;
	}
}

static int pset_run(struct pset *p, int64_t timeout_ns, const sigset_t *sigmask)
{
	uint64_t deadline = mux_deadline(timeout_ns);
	uint64_t spin = ivs_spin_ns();
	unsigned sig0 = ivs_sig_count();
	bool spun = false;
	int hit = 0;

	for (;;) {
		struct pollfd wk[MUX_SLEEP_FDS];
		int nval = 0, nw;
		int n = pset_scan(p);

		if (n || hit || mux_remaining(deadline) == 0) {
			n = pset_finish(p);
			if (n != 0 || mux_remaining(deadline) == 0)
				return n;
		}
		if (!spun && spin) {
			uint64_t now = ivs_now_ns(), len = mspin_budget(&tl_spin, spin);
			uint64_t t0 = now, end = now + len;
			bool got = false;
			long csw = -1;

			spun = true;
			if (end > deadline)
				end = deadline;
			while (len && !(got = pset_scan(p) != 0) && (now = ivs_now_ns()) < end)
				mspin_pause(now, end, len, &csw);
			if (len)
				mspin_end(&tl_spin, spin, mspin_won(got, csw), ivs_now_ns() - t0);
			if (got)
				continue;
		}
		spun = true;
		if (ivs_sig_count() != sig0) {
			/* A handler ran while we spun: poll/select never restart. */
			errno = EINTR;
			return -1;
		}
		nw = mux_sleep_begin(wk);
		mux_arm_slice = false;
		if (pset_arm(p)) {
			for (int i = 0; i < nw; i++)
				wk[i].revents = 0;
			mux_sleep_end(wk, nw);
			hit = 0;
			continue;
		}
		hit = pset_sleep(p, deadline, sigmask, wk, nw, &nval);
		if (hit < 0)
			return -1;
		pset_reclassify(p);
		if (nval) {
			/* report the POLLNVAL entries with whatever else is ready */
			int n2 = 0;

			for (nfds_t i = 0; i < p->nfds; i++)
				if (p->kind[i] == K_ACC && !(p->fds[i].revents & POLLNVAL))
					p->fds[i].revents = acc_revents(p->fds[i].events,
						ivs_sock_poll(p->socks[i], req_bits(p->fds[i].events)));
			n2 = pset_finish(p);
			return n2;
		}
	}
}

/* Classify the set. @return true when it holds special entries. */
static bool classify(struct pollfd *fds, nfds_t nfds, struct pset *p)
{
	bool special = false;

	for (nfds_t i = 0; i < nfds; i++) {
		int fd = fds[i].fd;
		struct ivs_sock *s = fd >= 0 ? ivs_sock_get(fd) : NULL;
		bool again = false;

		p->dropped[i] = 0;
		if (!s && fd >= 0 && ivs_sock_kernel_enter) {
			/* a TCP socket that may be promoted: counted while the
			 * kernel waits on it (a K_PLAIN entry with a socket) */
			struct ivs_sock *t = ivs_sock_kernel_enter(fd, &again);

			if (again)
				s = ivs_sock_get(fd);
			else if (t) {
				p->socks[i] = t;
				p->kind[i] = K_PLAIN;
				p->any_plain = true;
				continue;
			}
		}
		p->socks[i] = s;
		if (s) {
			p->kind[i] = K_ACC;
			special = true;
		} else if (fd >= 0 && mux_ep_has_acc(fd)) {
			p->kind[i] = K_NESTED;
			special = true;
			p->any_plain = true;
		} else {
			p->kind[i] = K_PLAIN;
			if (fd >= 0)
				p->any_plain = true;
		}
	}
	return special;
}

int mux_poll_wait(struct pollfd *fds, nfds_t nfds, int64_t timeout_ns,
		  const sigset_t *sigmask)
{
	struct ivs_sock *s_socks[PSET_STACK];
	unsigned char s_kind[PSET_STACK], s_drop[PSET_STACK];
	struct pollfd s_kfds[PSET_STACK + MUX_SLEEP_FDS];
	struct pset p = { .fds = fds, .nfds = nfds };
	void *heap = NULL;
	struct timespec ts;
	int r, err;

	mux_real();
	if (nfds <= PSET_STACK) {
		p.socks = s_socks;
		p.kind = s_kind;
		p.dropped = s_drop;
		p.kfds = s_kfds;
	} else {
		/* a pointer, two bytes and a pollfd per entry, pollfds first */
		size_t per = sizeof(struct pollfd) + sizeof(void *) + 2;

		if (nfds > (SIZE_MAX - MUX_SLEEP_FDS * sizeof(struct pollfd)) / per) {
			errno = EINVAL;
			return -1;
		}
		heap = malloc((nfds + MUX_SLEEP_FDS) * sizeof(struct pollfd) +
			      nfds * (sizeof(void *) + 2));
		if (!heap)
			return ivs_real.ppoll(fds, nfds, ns_to_ts(timeout_ns < 0 ?
					      INT64_MAX : timeout_ns, &ts), sigmask);
		p.kfds = heap;
		p.socks = (struct ivs_sock **)(p.kfds + nfds + MUX_SLEEP_FDS);
		p.kind = (unsigned char *)(p.socks + nfds);
		p.dropped = p.kind + nfds;
	}
	if (!classify(fds, nfds, &p))
		r = ivs_real.ppoll(fds, nfds, ns_to_ts(timeout_ns < 0 ? INT64_MAX :
					timeout_ns, &ts), sigmask);
	else
		r = pset_run(&p, timeout_ns, sigmask);
	err = errno;
	for (nfds_t i = 0; i < nfds; i++) {
		if (!p.socks[i])
			continue;
		if (p.kind[i] == K_PLAIN)
			ivs_sock_kernel_leave(p.socks[i]);
		else
			ivs_sock_put(p.socks[i]);
	}
	free(heap);
	errno = err;
	return r;
}

/* ---------------------------- poll, ppoll ---------------------------- */

static int64_t ts_to_ns(const struct timespec *ts)
{
	if (!ts)
		return -1;
	if (ts->tv_sec < 0 || ts->tv_nsec < 0 || ts->tv_nsec >= 1000000000L)
		return -2;
	if (ts->tv_sec > INT64_MAX / 1000000000LL - 1)
		return -1;
	return (int64_t)ts->tv_sec * 1000000000LL + ts->tv_nsec;
}

MUX_EXPORT int poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
	return mux_poll_wait(fds, nfds, timeout < 0 ? -1 : (int64_t)timeout * 1000000LL,
			     NULL);
}

MUX_EXPORT int ppoll(struct pollfd *fds, nfds_t nfds, const struct timespec *tmo,
	  const sigset_t *sigmask)
{
	int64_t ns = ts_to_ns(tmo);

	if (ns == -2) {
		errno = EINVAL;
		return -1;
	}
	return mux_poll_wait(fds, nfds, ns, sigmask);
}

/* _FORTIFY_SOURCE routes poll/ppoll through these. */
int __poll_chk(struct pollfd *fds, nfds_t nfds, int timeout, size_t fdslen);
int __ppoll_chk(struct pollfd *fds, nfds_t nfds, const struct timespec *tmo,
		const sigset_t *ss, size_t fdslen);

MUX_EXPORT int __poll_chk(struct pollfd *fds, nfds_t nfds, int timeout, size_t fdslen)
{
	if (fdslen / sizeof(*fds) < nfds)
		abort();
	return poll(fds, nfds, timeout);
}

MUX_EXPORT int __ppoll_chk(struct pollfd *fds, nfds_t nfds, const struct timespec *tmo,
		const sigset_t *ss, size_t fdslen)
{
	if (fdslen / sizeof(*fds) < nfds)
		abort();
	return ppoll(fds, nfds, tmo, ss);
}

/* --------------------------- select, pselect --------------------------- */

#define SEL_IN  (POLLIN | POLLRDNORM | POLLRDBAND | POLLHUP | POLLERR)
#define SEL_OUT (POLLOUT | POLLWRNORM | POLLWRBAND | POLLERR)
#define SEL_EX  (POLLPRI)

static bool sel_special(int nfds, fd_set *r, fd_set *w, fd_set *e)
{
	for (int fd = 0; fd < nfds; fd++) {
		struct ivs_sock *s;

		if (!((r && FD_ISSET(fd, r)) || (w && FD_ISSET(fd, w)) ||
		      (e && FD_ISSET(fd, e))))
			continue;
		s = ivs_sock_get(fd);
		if (s) {
			ivs_sock_put(s);
			return true;
		}
		/* the poll engine counts the kernel's wait on it */
		if (mux_ep_has_acc(fd) || (ivs_sock_promotable && ivs_sock_promotable(fd)))
			return true;
	}
	return false;
}

/*
 * select over the poll engine: one pollfd per fd present in a set.
 * @return the number of bits left set, or -1 (EBADF for a closed fd).
 */
static int sel_run(int nfds, fd_set *rs, fd_set *ws, fd_set *es, int64_t ns,
		   const sigset_t *sigmask)
{
	struct pollfd *pf = malloc((size_t)nfds * sizeof(*pf));
	int n = 0, r, cnt = 0;

	if (!pf) {
		errno = ENOMEM;
		return -1;
	}
	for (int fd = 0; fd < nfds; fd++) {
		short ev = 0;

		if (rs && FD_ISSET(fd, rs))
			ev |= POLLIN | POLLRDNORM | POLLRDBAND;
		if (ws && FD_ISSET(fd, ws))
			ev |= POLLOUT | POLLWRNORM | POLLWRBAND;
		if (es && FD_ISSET(fd, es))
			ev |= POLLPRI;
		if (ev)
			pf[n++] = (struct pollfd){ .fd = fd, .events = ev };
	}
	r = mux_poll_wait(pf, (nfds_t)n, ns, sigmask);
	if (r < 0) {
		free(pf);
		return -1;
	}
	for (int i = 0; i < n; i++) {
		if (pf[i].revents & POLLNVAL) {
			free(pf);
			errno = EBADF;
			return -1;
		}
	}
	for (int i = 0; i < n; i++) {
		int fd = pf[i].fd;
		short re = pf[i].revents;

		if (rs && FD_ISSET(fd, rs)) {
			if (re & SEL_IN)
				cnt++;
			else
				FD_CLR(fd, rs);
		}
		if (ws && FD_ISSET(fd, ws)) {
			if (re & SEL_OUT)
				cnt++;
			else
				FD_CLR(fd, ws);
		}
		if (es && FD_ISSET(fd, es)) {
			if (re & SEL_EX)
				cnt++;
			else
				FD_CLR(fd, es);
		}
	}
	free(pf);
	return cnt;
}

MUX_EXPORT int select(int nfds, fd_set *rs, fd_set *ws, fd_set *es, struct timeval *tv)
{
	int64_t ns = -1;
	uint64_t start;
	int r;

	mux_real();
	if (nfds < 0 || (tv && (tv->tv_sec < 0 || tv->tv_usec < 0))) {
		errno = EINVAL;
		return -1;
	}
	if (!sel_special(nfds > FD_SETSIZE ? FD_SETSIZE : nfds, rs, ws, es))
		return ivs_real.select(nfds, rs, ws, es, tv);
	if (nfds > FD_SETSIZE)
		nfds = FD_SETSIZE; /* documented limit with accelerated fds */
	if (tv)
		ns = (int64_t)tv->tv_sec * 1000000000LL + (int64_t)tv->tv_usec * 1000LL;
	start = ivs_now_ns();
	r = sel_run(nfds, rs, ws, es, ns, NULL);
	if (tv && r >= 0) {
		/* Linux writes back the time left */
		int64_t left = ns - (int64_t)(ivs_now_ns() - start);

		if (left < 0)
			left = 0;
		tv->tv_sec = left / 1000000000LL;
		tv->tv_usec = (left % 1000000000LL) / 1000;
	}
	return r;
}

MUX_EXPORT int pselect(int nfds, fd_set *rs, fd_set *ws, fd_set *es, const struct timespec *tmo,
	    const sigset_t *sigmask)
{
	int64_t ns = ts_to_ns(tmo);

	mux_real();
	if (nfds < 0 || ns == -2) {
		errno = EINVAL;
		return -1;
	}
	if (!sel_special(nfds > FD_SETSIZE ? FD_SETSIZE : nfds, rs, ws, es))
		return ivs_real.pselect(nfds, rs, ws, es, tmo, sigmask);
	if (nfds > FD_SETSIZE)
		nfds = FD_SETSIZE;
	return sel_run(nfds, rs, ws, es, ns, sigmask);
}
