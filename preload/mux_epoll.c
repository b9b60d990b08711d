// SPDX-License-Identifier: MIT
/*
 * epoll for sets holding accelerated sockets. Every registration is still
 * made in the kernel (errors and fd lifetime stay native); a side table per
 * epoll fd keeps the caller's events and data, answers for accelerated
 * sockets from their rings (level, edge, one-shot) and merges the kernel's
 * answer for plain fds. See docs/mux.md.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "ivsock/barrier.h"
#include "mux.h"

_Static_assert(EPOLLIN == POLLIN && EPOLLOUT == POLLOUT && EPOLLPRI == POLLPRI &&
	       EPOLLERR == POLLERR && EPOLLHUP == POLLHUP &&
	       EPOLLRDHUP == POLLRDHUP && EPOLLRDNORM == POLLRDNORM &&
	       EPOLLWRNORM == POLLWRNORM, "poll and epoll bits differ");

/* Provided by the socket core; weak until it does (see shim.h). */
extern int ivs_sock_nfds(struct ivs_sock *s) __attribute__((weak));
extern unsigned ivs_sock_kernel_events(struct ivs_sock *s) __attribute__((weak));
extern unsigned ivs_sock_kernel_io(struct ivs_sock *s) __attribute__((weak));
extern unsigned ivs_sock_arm_quiet(struct ivs_sock *s, unsigned events) __attribute__((weak));
extern bool ivs_sock_may_fall_back(struct ivs_sock *s) __attribute__((weak));

/* While a connector waits for its acceptor, its kernel socket matters too. */
static inline unsigned kernel_events(struct ivs_sock *s)
{
	return ivs_sock_kernel_events ? ivs_sock_kernel_events(s) : 0;
}

/* A connector waiting for its acceptor: it may fall back, so its kernel
 * socket's data and its attach deadline matter (100 ms slices). An
 * attached socket only has liveness there, which its kernel registration
 * watches: it needs no slices (10,000 idle connections cost nothing). */
static inline bool may_fall_back(struct ivs_sock *s)
{
	return ivs_sock_may_fall_back ? ivs_sock_may_fall_back(s) : kernel_events(s) != 0;
}

/* Kernel registrations of accelerated and nested entries carry this data:
 * their kernel events are hints (liveness) or merged, never passed on. */
#define TAG_HI 0x49565341u /* "IVSA" */
#define EP_MAX_NESTS 4
#define EP_MAXEVENTS ((int)(INT_MAX / sizeof(struct epoll_event)))

enum { E_PLAIN, E_ACC, E_NESTED };

struct ep_ent {
	int fd;                 /* -1: closed while a dup keeps the file registered */
	int kind;               /* E_* */
	uint32_t events;        /* as the caller gave them */
	epoll_data_t data;      /* as the caller gave it */
	struct ivs_sock *sock;  /* E_ACC: a reference held */
	int sidx;               /* index in ep->spec, -1 when E_PLAIN */
	bool disabled;          /* EPOLLONESHOT reported, until EPOLL_CTL_MOD */
	bool fresh;             /* EPOLLET: not examined since ADD/MOD */
	bool offered;           /* E_ACC: kernel events matter (may fall back) */
	uint32_t kready;        /* E_NESTED: the kernel said readable */
	uint64_t seen_seq;      /* EPOLLET: event counter when last examined */
	uint32_t kio;           /* E_ACC: EPOLLIN/EPOLLOUT added to the kernel
				 * registration (a path switch moved them to TCP) */
	bool khint;             /* E_ACC: its kernel registration fired (or it
				 * is new): the next arm looks at the kernel socket */
};

/* One per epoll fd number, never freed (a racing lock-free lookup stays
 * valid); emptied when the epoll fd is closed or made again. */
struct mux_ep {
	pthread_mutex_t lock;   /* guards all below; never held while sleeping */
	int epfd;
	bool known;             /* made by epoll_create* or used successfully */
	struct ep_ent **byfd;   /* registered fds by number */
	int cap;
	struct ep_ent **spec;   /* E_ACC and E_NESTED entries (zombies too) */
	int nspec, spec_cap;
	int nplain;             /* entries whose kernel answer counts */
	bool kpoke;             /* the epoll fd was readable: harvest the kernel */
	int noffered;           /* E_ACC entries that may still fall back */
	_Atomic int nspecial;   /* == nspec, read without the lock */
	unsigned rotor;         /* where the next harvest starts */
};

#define CHUNK_SHIFT 10
#define CHUNK_SIZE (1U << CHUNK_SHIFT)
#define TOP_SIZE 1024U /* 1 Mi fds */

struct slot {
	struct mux_ep *_Atomic ep;
	_Atomic int nreg; /* side tables holding this fd */
};
struct chunk {
	struct slot s[CHUNK_SIZE];
};

static struct chunk *_Atomic top[TOP_SIZE];
static pthread_mutex_t tab_lock = PTHREAD_MUTEX_INITIALIZER; /* before any ep lock */
static struct mux_ep **all_eps;
static int n_eps, eps_cap;
static _Atomic int spec_eps; /* side tables with special entries */
static _Atomic int n_zombies; /* entries whose fd closed while a dup lives */
_Thread_local bool mux_arm_slice;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* ------------------------------ tables ------------------------------ */

static struct slot *slot_at(int fd, bool create)
{
	unsigned t = (unsigned)fd >> CHUNK_SHIFT;
	struct chunk *c, *nc;

	if (fd < 0 || (unsigned)fd >= TOP_SIZE * CHUNK_SIZE)
		return NULL;
	c = atomic_load_explicit(&top[t], memory_order_acquire);
	if (!c && create) {
		nc = calloc(1, sizeof(*nc));
		if (!nc)
			return NULL;
		if (atomic_compare_exchange_strong(&top[t], &c, nc))
			c = nc;
		else
			free(nc);
	}
	return c ? &c->s[(unsigned)fd & (CHUNK_SIZE - 1)] : NULL;
}

static inline struct mux_ep *ep_lookup(int fd)
{
	struct slot *sl = slot_at(fd, false);

	return sl ? atomic_load_explicit(&sl->ep, memory_order_acquire) : NULL;
}

static void atfork_prepare(void)
{
	pthread_mutex_lock(&tab_lock);
	for (int i = 0; i < n_eps; i++)
		pthread_mutex_lock(&all_eps[i]->lock);
}

static void atfork_release(void)
{
	for (int i = n_eps - 1; i >= 0; i--)
		pthread_mutex_unlock(&all_eps[i]->lock);
	pthread_mutex_unlock(&tab_lock);
}

/* The child's thread has another id: recursive mutexes held by the parent's
 * thread cannot be unlocked there, so they are made again (nobody else runs). */
static void atfork_child(void)
{
	pthread_mutexattr_t a;

	pthread_mutexattr_init(&a);
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
	for (int i = 0; i < n_eps; i++)
		pthread_mutex_init(&all_eps[i]->lock, &a);
	pthread_mutexattr_destroy(&a);
	pthread_mutex_init(&tab_lock, NULL);
}

static void atfork_init(void)
{
	pthread_atfork(atfork_prepare, atfork_release, atfork_child);
}

/* The side table of epoll fd `fd`, made on first need. */
static struct mux_ep *ep_obtain(int fd)
{
	struct slot *sl = slot_at(fd, true);
	struct mux_ep *ep;
	pthread_mutexattr_t a;

	if (!sl)
		return NULL;
	ep = atomic_load_explicit(&sl->ep, memory_order_acquire);
	if (ep)
		return ep;
	pthread_once(&atfork_once, atfork_init);
	pthread_mutex_lock(&tab_lock);
	ep = atomic_load_explicit(&sl->ep, memory_order_acquire);
	if (ep)
		goto out;
	if (n_eps == eps_cap) {
		int nc = eps_cap ? 2 * eps_cap : 16;
		struct mux_ep **n = realloc(all_eps, (size_t)nc * sizeof(*n));

		if (!n)
			goto out;
		all_eps = n;
		eps_cap = nc;
	}
	ep = calloc(1, sizeof(*ep));
	if (!ep)
		goto out;
	/* recursive: a stale nested entry may lead a wait back to its own set */
	pthread_mutexattr_init(&a);
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&ep->lock, &a);
	pthread_mutexattr_destroy(&a);
	ep->epfd = fd;
	all_eps[n_eps++] = ep;
	atomic_store_explicit(&sl->ep, ep, memory_order_release);
out:
	pthread_mutex_unlock(&tab_lock);
	return ep;
}

static inline struct ep_ent *ent_find(struct mux_ep *ep, int fd)
{
	return fd >= 0 && fd < ep->cap ? ep->byfd[fd] : NULL;
}

static int spec_add(struct mux_ep *ep, struct ep_ent *e)
{
	if (ep->nspec == ep->spec_cap) {
		int nc = ep->spec_cap ? 2 * ep->spec_cap : 8;
		struct ep_ent **n = realloc(ep->spec, (size_t)nc * sizeof(*n));

		if (!n)
			return -ENOMEM;
		ep->spec = n;
		ep->spec_cap = nc;
	}
	e->sidx = ep->nspec;
	ep->spec[ep->nspec++] = e;
	if (ep->nspec == 1)
		atomic_fetch_add(&spec_eps, 1);
	atomic_store_explicit(&ep->nspecial, ep->nspec, memory_order_release);
	return 0;
}

static void spec_del(struct mux_ep *ep, struct ep_ent *e)
{
	int i = e->sidx;

	if (i < 0)
		return;
	ep->spec[i] = ep->spec[--ep->nspec];
	ep->spec[i]->sidx = i;
	e->sidx = -1;
	if (ep->nspec == 0)
		atomic_fetch_sub(&spec_eps, 1);
	atomic_store_explicit(&ep->nspecial, ep->nspec, memory_order_release);
}

/* Put e in the table under its fd. @return 0 or -ENOMEM. */
static int ent_insert(struct mux_ep *ep, struct ep_ent *e)
{
	struct slot *sl = slot_at(e->fd, true);

	if (!sl)
		return -ENOMEM;
	if (e->fd >= ep->cap) {
		int nc = ep->cap ? ep->cap : 64;
		struct ep_ent **n;

		while (nc <= e->fd)
			nc *= 2;
		n = realloc(ep->byfd, (size_t)nc * sizeof(*n));
		if (!n)
			return -ENOMEM;
		memset(n + ep->cap, 0, (size_t)(nc - ep->cap) * sizeof(*n));
		ep->byfd = n;
		ep->cap = nc;
	}
	e->sidx = -1;
	if (e->kind != E_PLAIN && spec_add(ep, e) < 0)
		return -ENOMEM;
	if (e->kind != E_ACC)
		ep->nplain++;
	ep->byfd[e->fd] = e;
	atomic_fetch_add(&sl->nreg, 1);
	return 0;
}

/* Forget e's fd number (the entry may live on as a zombie). */
static void ent_unindex(struct mux_ep *ep, struct ep_ent *e)
{
	struct slot *sl;

	if (e->fd < 0) {
		atomic_fetch_sub(&n_zombies, 1);
		return;
	}
	ep->byfd[e->fd] = NULL;
	sl = slot_at(e->fd, false);
	if (sl)
		atomic_fetch_sub(&sl->nreg, 1);
	e->fd = -1;
}

static void ent_remove(struct mux_ep *ep, struct ep_ent *e)
{
	if (e->offered)
		ep->noffered--;
	ent_unindex(ep, e);
	spec_del(ep, e);
	if (e->kind != E_ACC)
		ep->nplain--;
	if (e->sock)
		ivs_sock_put(e->sock);
	free(e);
}

static void ep_clear(struct mux_ep *ep)
{
	for (int fd = 0; fd < ep->cap; fd++)
		if (ep->byfd[fd])
			ent_remove(ep, ep->byfd[fd]);
	while (ep->nspec)
		ent_remove(ep, ep->spec[0]);
	ep->rotor = 0;
}

static inline uint64_t tag_of(int fd)
{
	return (uint64_t)TAG_HI << 32 | (uint32_t)fd;
}

/* ------------------------- readiness of entries ------------------------- */

static bool ep_peek_depth(struct mux_ep *ep, int depth);
static bool ep_arm_depth(struct mux_ep *ep, int depth);
static void acc_kernel_io(struct mux_ep *ep, struct ep_ent *e);

static inline unsigned want_of(const struct ep_ent *e)
{
	unsigned w = e->events & MUX_POLL_BITS;

	if (w & EPOLLRDNORM)
		w |= EPOLLIN;
	if (w & EPOLLWRNORM)
		w |= EPOLLOUT;
	return w;
}

static inline uint32_t acc_mask(const struct ep_ent *e, unsigned r)
{
	uint32_t out = r & ((e->events & MUX_POLL_BITS) | EPOLLERR | EPOLLHUP);

	if ((r & EPOLLIN) && (e->events & EPOLLRDNORM))
		out |= EPOLLRDNORM;
	if ((r & EPOLLOUT) && (e->events & EPOLLWRNORM))
		out |= EPOLLWRNORM;
	return out;
}

/* Inner epoll fd of a nested entry: ready when one of its entries is. A busy
 * inner lock counts as ready (a spurious wake-up, never a lost one). */
/* Arm an accelerated entry: the kernel socket's liveness is looked at (a
 * syscall) only when its kernel registration said something since the
 * last look, or on the first arm. */
static inline unsigned arm_acc(struct ep_ent *e, unsigned events)
{
	if (!e->khint && ivs_sock_arm_quiet)
		return ivs_sock_arm_quiet(e->sock, events);
	e->khint = false;
	return ivs_sock_arm(e->sock, events);
}

static bool nested_peek(const struct ep_ent *e, int depth)
{
	struct mux_ep *in = ep_lookup(e->fd);
	bool r;

	if (!in || depth >= EP_MAX_NESTS || !atomic_load(&in->nspecial))
		return false;
	if (pthread_mutex_trylock(&in->lock) != 0)
		return true;
	r = ep_peek_depth(in, depth + 1);
	pthread_mutex_unlock(&in->lock);
	return r;
}

/*
 * Readiness of entry e to report now (0: none). consume: this is a report
 * (EPOLLET remembers the event counter, nested kernel readiness is used up).
 * Called with ep->lock held.
 */
static uint32_t ent_ready(struct ep_ent *e, bool consume, int depth)
{
	uint32_t r = 0;

	if (e->disabled)
		return 0;
	if (e->kind == E_ACC) {
		uint64_t seq = 0;

		if (e->events & EPOLLET) {
			/* the counter first: an event after it is seen next time */
			seq = ivs_sock_event_seq(e->sock);
			if (!e->fresh && seq == e->seen_seq)
				return 0;
		}
		r = acc_mask(e, ivs_sock_poll(e->sock, want_of(e)));
		if ((e->events & EPOLLET) && consume) {
			e->seen_seq = seq;
			e->fresh = false;
		}
	} else if (e->kind == E_NESTED) {
		uint32_t in = (e->events & EPOLLIN) ? EPOLLIN : 0;

		if (e->kready || nested_peek(e, depth))
			r = (e->kready & e->events) | in;
		if (consume)
			e->kready = 0;
	}
	return r;
}

static bool ep_peek_depth(struct mux_ep *ep, int depth)
{
	for (int i = 0; i < ep->nspec; i++)
		if (ent_ready(ep->spec[i], false, depth))
			return true;
	return false;
}

/* Arm every special entry. @return true when one is (or may be) ready. */
static bool ep_arm_depth(struct mux_ep *ep, int depth)
{
	bool ready = false;

	for (int i = 0; i < ep->nspec; i++) {
		struct ep_ent *e = ep->spec[i];

		if (e->disabled)
			continue;
		if (e->kind == E_ACC)
			acc_kernel_io(ep, e);
		if (e->kind == E_ACC && (e->events & EPOLLET)) {
			unsigned want = want_of(e), now;

			if (e->fresh || ivs_sock_event_seq(e->sock) != e->seen_seq) {
				ready = true;
				continue;
			}
			/* Arm only what is not ready already (and reported): the
			 * core arms nothing when any asked event is ready, and a
			 * read side at EOF must not stop the wait for space. */
			now = ivs_sock_poll(e->sock, want);
			if (want & ~now & (EPOLLIN | EPOLLOUT | EPOLLRDHUP))
				arm_acc(e, want & ~now);
			else
				mux_arm_slice = true;
			if (ivs_sock_event_seq(e->sock) != e->seen_seq)
				ready = true;
		} else if (e->kind == E_ACC) {
			if (acc_mask(e, arm_acc(e, want_of(e))))
				ready = true;
		} else if (e->kind == E_NESTED) {
			struct mux_ep *in = ep_lookup(e->fd);

			if (e->kready) {
				ready = true;
			} else if (in && depth < EP_MAX_NESTS && atomic_load(&in->nspecial)) {
				if (pthread_mutex_trylock(&in->lock) != 0) {
					ready = true;
					continue;
				}
				if (ep_arm_depth(in, depth + 1) && (e->events & EPOLLIN))
					ready = true;
				pthread_mutex_unlock(&in->lock);
			}
		}
	}
	return ready;
}

/*
 * Drop the kernel events that are ours: hints on accelerated sockets (the
 * ring answers), readiness of nested epoll fds (kept in kready, reported by
 * ep_collect). @return the number of events left, compacted.
 */
static int ep_filter(struct mux_ep *ep, struct epoll_event *ev, int n)
{
	int k = 0;

	for (int i = 0; i < n; i++) {
		if ((uint32_t)(ev[i].data.u64 >> 32) == TAG_HI) {
			struct ep_ent *e = ent_find(ep, (int)(uint32_t)ev[i].data.u64);

			if (e && e->kind == E_NESTED) {
				e->kready |= ev[i].events;
				continue;
			}
			if (e && e->kind == E_ACC) {
				e->khint = true; /* liveness: looked at on the next arm */
				/* an arrival on a direction a switch moved to TCP
				 * is an edge the ring's event counter never saw */
				if (ev[i].events & e->kio)
					e->fresh = true;
				continue;
			}
		}
		ev[k++] = ev[i];
	}
	return k;
}

/* Kernel events of plain entries, without waiting; @return count or -1. */
static int ep_kernel_now(struct mux_ep *ep, struct epoll_event *ev, int max)
{
	int r;

	if (max <= 0 || (!ep->nplain && !ep->kpoke))
		return 0;
	ep->kpoke = false;
	r = ivs_real.epoll_wait(ep->epfd, ev, max, 0);
	if (r <= 0)
		return r;
	return ep_filter(ep, ev, r);
}

static void plain_one(struct mux_ep *ep, struct ep_ent *e, void *arg);

/* Connectors still waiting for their acceptor: once attached they are plain
 * ring sockets; once fallen back to TCP the kernel answers for them again. */
static void ep_check_offered(struct mux_ep *ep)
{
	for (int i = 0; ep->noffered && i < ep->nspec; i++) {
		struct ep_ent *e = ep->spec[i];
		struct ivs_sock *s;

		if (!e->offered || e->fd < 0)
			continue;
		s = ivs_sock_get(e->fd);
		if (s == e->sock) {
			if (!may_fall_back(s)) {
				e->offered = false;
				ep->noffered--;
			}
			ivs_sock_put(s);
			continue;
		}
		if (s)
			ivs_sock_put(s);
		plain_one(ep, e, NULL); /* fell back (or fd reused): kernel's now */
		i--;
	}
}

/*
 * One non-blocking round: up to max events from the ready special entries
 * and from the kernel (plain fds), taken round-robin from after the last one
 * reported by the previous call, the kernel counting as one more entry, so
 * that at maxevents no busy socket starves the others. @return count or -1.
 */
static int ep_harvest(struct mux_ep *ep, struct epoll_event *out, int max)
{
	int n = 0, nspec, total, last = -1;
	unsigned start;

	pthread_mutex_lock(&ep->lock);
	if (ep->noffered)
		ep_check_offered(ep);
	nspec = ep->nspec;
	total = nspec + 1; /* position nspec: the kernel */
	start = ep->rotor % (unsigned)total;
	for (int i = 0; i < total && n < max; i++) {
		int idx = (int)((start + (unsigned)i) % (unsigned)total);
		struct ep_ent *e;
		uint32_t r;

		if (idx == nspec) {
			int k = ep_kernel_now(ep, out + n, max - n);

			if (k < 0) {
				n = -1;
				break;
			}
			if (k > 0)
				last = idx;
			n += k;
			continue;
		}
		e = ep->spec[idx];
		r = ent_ready(e, true, 0);
		if (!r)
			continue;
		out[n].events = r;
		out[n].data = e->data;
		n++;
		if (e->events & EPOLLONESHOT)
			e->disabled = true;
		last = idx;
	}
	if (last >= 0)
		ep->rotor = (unsigned)last + 1;
	pthread_mutex_unlock(&ep->lock);
	return n;
}

/* ------------------------------ cascade ------------------------------ */

bool mux_ep_has_acc(int fd)
{
	struct mux_ep *ep;

	if (__builtin_expect(!atomic_load_explicit(&spec_eps, memory_order_relaxed), 1))
		return false;
	ep = ep_lookup(fd);
	return ep && atomic_load_explicit(&ep->nspecial, memory_order_acquire);
}

bool mux_ep_peek(int fd)
{
	struct mux_ep *ep = ep_lookup(fd);
	bool r;

	if (!ep)
		return false;
	pthread_mutex_lock(&ep->lock);
	r = ep_peek_depth(ep, 1);
	pthread_mutex_unlock(&ep->lock);
	return r;
}

bool mux_ep_arm(int fd)
{
	struct mux_ep *ep = ep_lookup(fd);
	bool r;

	if (!ep)
		return false;
	pthread_mutex_lock(&ep->lock);
	r = ep_arm_depth(ep, 1);
	pthread_mutex_unlock(&ep->lock);
	return r;
}

/* ------------------------------ epoll_ctl ------------------------------ */

/* Replace the kernel registration of an accelerated fd by liveness only
 * (edge-triggered HUP/ERR; its kernel socket is always writable), plus the
 * directions `io` a path switch moved to the kernel socket. */
static void kernel_watch(int epfd, int fd, uint32_t events, struct ivs_sock *s, uint32_t io)
{
	struct epoll_event kev = { .events = EPOLLET | kernel_events(s) | io,
				   .data.u64 = tag_of(fd) };

	if (!(events & EPOLLEXCLUSIVE)) {
		if (ivs_real.epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &kev) < 0)
			ivs_log(IVS_LOG_WARN, "mux: epoll %d: liveness of fd %d: %d",
				epfd, fd, errno);
		return;
	}
	/* an exclusive registration cannot be modified: make it again */
	kev.events |= EPOLLEXCLUSIVE;
	ivs_real.epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
	if (ivs_real.epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &kev) < 0)
		ivs_log(IVS_LOG_WARN, "mux: epoll %d: re-add fd %d: %d", epfd, fd, errno);
}

static void kernel_liveness(int epfd, int fd, uint32_t events, struct ivs_sock *s)
{
	kernel_watch(epfd, fd, events, s, 0);
}

/* Before sleeping: the directions of an accelerated entry that a path
 * switch moved to TCP wake us through the kernel (edge-triggered: one wake
 * per arrival, never a busy loop on unread data). */
static void acc_kernel_io(struct mux_ep *ep, struct ep_ent *e)
{
	uint32_t io = ivs_sock_kernel_io && e->fd >= 0 ?
		      ivs_sock_kernel_io(e->sock) & e->events & (EPOLLIN | EPOLLOUT) : 0;

	if (io == e->kio)
		return;
	e->kio = io;
	kernel_watch(ep->epfd, e->fd, e->events, e->sock, io);
}

static struct ep_ent *ent_new(int fd, int kind, const struct epoll_event *ev,
			      struct ivs_sock *s)
{
	struct ep_ent *e = calloc(1, sizeof(*e));

	if (!e)
		return NULL;
	e->fd = fd;
	e->kind = kind;
	e->events = ev->events;
	e->data = ev->data;
	e->sock = s;
	e->fresh = true;
	e->khint = true;
	e->sidx = -1;
	return e;
}

static bool is_epoll_fd(struct mux_ep *self, int fd)
{
	struct mux_ep *in;

	if (fd == self->epfd)
		return false;
	in = ep_lookup(fd);
	return in && in->known;
}

/* Record a successful registration; out of memory leaves it kernel-only. */
static void record(struct mux_ep *ep, int fd, int kind, const struct epoll_event *ev,
		   struct ivs_sock *s)
{
	struct ep_ent *old = ent_find(ep, fd);
	struct ep_ent *e;

	if (old)
		ent_remove(ep, old); /* stale: the kernel had no registration */
	e = ent_new(fd, kind, ev, s);
	if (e && s && may_fall_back(s)) {
		e->offered = true;
		ep->noffered++;
	}
	if (!e || ent_insert(ep, e) < 0) {
		ivs_log(IVS_LOG_WARN, "mux: epoll %d: no memory for fd %d", ep->epfd, fd);
		if (e)
			e->sock = NULL;
		if (e && e->offered)
			ep->noffered--;
		free(e);
		if (s)
			ivs_sock_put(s);
	}
}

static int ctl_add(struct mux_ep *ep, int fd, struct epoll_event *ev)
{
	struct ivs_sock *s = ivs_sock_get(fd);
	struct epoll_event kev;
	int kind = s ? E_ACC : is_epoll_fd(ep, fd) ? E_NESTED : E_PLAIN;

	if (kind == E_PLAIN) {
		if (ivs_real.epoll_ctl(ep->epfd, EPOLL_CTL_ADD, fd, ev) < 0)
			return -1;
		record(ep, fd, E_PLAIN, ev, NULL);
		return 0;
	}
	/* the caller's events, so the kernel validates them; our data */
	kev.events = ev->events;
	kev.data.u64 = tag_of(fd);
	if (ivs_real.epoll_ctl(ep->epfd, EPOLL_CTL_ADD, fd, &kev) < 0) {
		if (s)
			ivs_sock_put(s);
		return -1;
	}
	if (kind == E_ACC)
		kernel_liveness(ep->epfd, fd, ev->events, s);
	record(ep, fd, kind, ev, s);
	return 0;
}

static int ctl_mod(struct mux_ep *ep, int fd, struct epoll_event *ev)
{
	struct ep_ent *e = ent_find(ep, fd);
	struct ivs_sock *s = NULL;
	struct epoll_event kev;
	int kind = e ? e->kind : E_PLAIN;

	if (kind == E_PLAIN) {
		s = ivs_sock_get(fd); /* accelerated since, without the hook? */
		kind = s ? E_ACC : E_PLAIN;
	}
	if (kind == E_PLAIN) {
		if (ivs_real.epoll_ctl(ep->epfd, EPOLL_CTL_MOD, fd, ev) < 0) {
			if (errno == ENOENT && e)
				ent_remove(ep, e);
			return -1;
		}
		if (e) {
			e->events = ev->events;
			e->data = ev->data;
		} else {
			record(ep, fd, E_PLAIN, ev, NULL);
		}
		return 0;
	}
	kev.events = ev->events;
	kev.data.u64 = tag_of(fd);
	if (ivs_real.epoll_ctl(ep->epfd, EPOLL_CTL_MOD, fd, &kev) < 0) {
		int err = errno;

		if (s)
			ivs_sock_put(s);
		if (err == ENOENT && e)
			ent_remove(ep, e);
		errno = err;
		return -1;
	}
	if (kind == E_ACC)
		kernel_liveness(ep->epfd, fd, ev->events, s ? s : e->sock);
	if (s) { /* plain entry (or none) turned accelerated */
		record(ep, fd, E_ACC, ev, s);
		return 0;
	}
	e->events = ev->events;
	e->data = ev->data;
	e->disabled = false;
	e->fresh = true;
	e->kready = 0;
	/* the registration is liveness only again: the next arm adds back
	 * the directions a switch moved to TCP, and looks at the socket */
	e->kio = 0;
	e->khint = true;
	return 0;
}

static int ctl_del(struct mux_ep *ep, int fd, struct epoll_event *ev)
{
	struct ep_ent *e = ent_find(ep, fd);
	int r = ivs_real.epoll_ctl(ep->epfd, EPOLL_CTL_DEL, fd, ev);
	int err = errno;

	if (e && (r == 0 || err == ENOENT))
		ent_remove(ep, e);
	errno = err;
	return r;
}

MUX_EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	struct mux_ep *ep;
	int r;

	mux_real();
	if ((op != EPOLL_CTL_ADD && op != EPOLL_CTL_MOD && op != EPOLL_CTL_DEL) ||
	    (op != EPOLL_CTL_DEL && !ev))
		return ivs_real.epoll_ctl(epfd, op, fd, ev);
	ep = ep_obtain(epfd);
	if (!ep)
		return ivs_real.epoll_ctl(epfd, op, fd, ev);
	pthread_mutex_lock(&ep->lock);
	if (op == EPOLL_CTL_ADD)
		r = ctl_add(ep, fd, ev);
	else if (op == EPOLL_CTL_MOD)
		r = ctl_mod(ep, fd, ev);
	else
		r = ctl_del(ep, fd, ev);
	if (r == 0)
		ep->known = true;
	pthread_mutex_unlock(&ep->lock);
	return r;
}

/* A new epoll fd: whatever the table held under that number is stale. */
static int ep_created(int fd)
{
	struct mux_ep *ep;

	if (fd < 0)
		return fd;
	ep = ep_obtain(fd);
	if (ep) {
		pthread_mutex_lock(&ep->lock);
		ep_clear(ep);
		ep->known = true;
		pthread_mutex_unlock(&ep->lock);
	}
	return fd;
}

MUX_EXPORT int epoll_create(int size)
{
	mux_real();
	return ep_created(ivs_real.epoll_create(size));
}

MUX_EXPORT int epoll_create1(int flags)
{
	mux_real();
	return ep_created(ivs_real.epoll_create1(flags));
}

/* ------------------------------ epoll_wait ------------------------------ */

enum { W_WAIT, W_PWAIT, W_PWAIT2 };

static int real_wait(int mode, int epfd, struct epoll_event *ev, int max, int ms,
		     const struct timespec *ts, const sigset_t *ss)
{
	if (mode == W_PWAIT2 && ivs_real.epoll_pwait2)
		return ivs_real.epoll_pwait2(epfd, ev, max, ts, ss);
	if (mode == W_WAIT)
		return ivs_real.epoll_wait(epfd, ev, max, ms);
	return ivs_real.epoll_pwait(epfd, ev, max, ms, ss);
}

/* Sleep until the epoll fd, a wake-up or the deadline. @return 1 when the
 * epoll fd is readable, 0, or -1. */
static int ep_sleep(int epfd, uint64_t deadline, const sigset_t *ss,
		    struct pollfd *wk, int nw, bool offered)
{
	struct pollfd p[1 + MUX_SLEEP_FDS];
	int64_t left = mux_remaining(deadline);
	struct timespec ts, *tsp = NULL;
	int r, err;

	if (nw == 0 && left > (int64_t)MUX_NOWAKE_SLICE_NS)
		left = MUX_NOWAKE_SLICE_NS;
	if (offered && left > (int64_t)MUX_OFFER_SLICE_NS)
		left = MUX_OFFER_SLICE_NS;
	if (mux_arm_slice && left > (int64_t)MUX_EDGE_SLICE_NS)
		left = MUX_EDGE_SLICE_NS;
	if (left != INT64_MAX) {
		ts.tv_sec = left / 1000000000LL;
		ts.tv_nsec = left % 1000000000LL;
		tsp = &ts;
	}
	p[0] = (struct pollfd){ .fd = epfd, .events = POLLIN };
	for (int i = 0; i < nw; i++)
		p[1 + i] = wk[i];
	r = ivs_real.ppoll(p, 1 + (nfds_t)nw, tsp, ss);
	err = errno;
	for (int i = 0; i < nw; i++)
		wk[i].revents = r > 0 ? p[1 + i].revents : 0;
	mux_sleep_end(wk, nw);
	if (r < 0) {
		errno = err;
		return -1;
	}
	if (p[0].revents & POLLNVAL) { /* closed under us */
		errno = EBADF;
		return -1;
	}
	return p[0].revents != 0;
}

static __thread struct mux_spin tl_spin = { UINT32_MAX, 0, 63, false };

static int ep_wait(int mode, int epfd, struct epoll_event *ev, int max, int ms,
		   const struct timespec *ts, const sigset_t *ss)
{
	struct mux_ep *ep;
	int64_t tmo;
	uint64_t deadline, spin;
	unsigned sig0 = ivs_sig_count();
	bool spun = false;
	int r;

	mux_real();
	ep = ep_lookup(epfd);
	if (__builtin_expect(!ep || !atomic_load_explicit(&ep->nspecial,
							  memory_order_acquire), 1)) {
		int i;

		r = real_wait(mode, epfd, ev, max, ms, ts, ss);
		if (r <= 0 || !ep)
			return r;
		for (i = 0; i < r; i++) /* anything of ours? (no lock if not) */
			if ((uint32_t)(ev[i].data.u64 >> 32) == TAG_HI)
				break;
		if (i == r)
			return r;
		pthread_mutex_lock(&ep->lock);
		r = ep_filter(ep, ev, r);
		pthread_mutex_unlock(&ep->lock);
		if (r > 0)
			return r;
		/* only hints of a registration turning accelerated: go on */
	}
	if (max <= 0 || max > EP_MAXEVENTS || !ev)
		return real_wait(mode, epfd, ev, max, 0, &(struct timespec){ 0, 0 }, ss);
	if (mode == W_PWAIT2 && ts) {
		if (ts->tv_sec < 0 || ts->tv_nsec < 0 || ts->tv_nsec >= 1000000000L) {
			errno = EINVAL;
			return -1;
		}
		tmo = ts->tv_sec > INT64_MAX / 1000000000LL - 1 ? -1 :
		      (int64_t)ts->tv_sec * 1000000000LL + ts->tv_nsec;
	} else if (mode == W_PWAIT2) {
		tmo = -1;
	} else {
		tmo = ms < 0 ? -1 : (int64_t)ms * 1000000LL;
	}
	deadline = mux_deadline(tmo);
	spin = ivs_spin_ns();
	for (;;) {
		struct pollfd wk[MUX_SLEEP_FDS];
		int nw;
		bool ready, offered;

		r = ep_harvest(ep, ev, max);
		if (r != 0 || mux_remaining(deadline) == 0)
			return r;
		if (!spun && spin) {
			uint64_t now = ivs_now_ns(), len = mspin_budget(&tl_spin, spin);
			uint64_t t0 = now, end = now + len;
			long csw = -1;

			if (end > deadline)
				end = deadline;
			spun = true;
			ready = false;
			while (len) {
				pthread_mutex_lock(&ep->lock);
				ready = ep_peek_depth(ep, 0);
				pthread_mutex_unlock(&ep->lock);
				if (ready || (now = ivs_now_ns()) >= end)
					break;
				mspin_pause(now, end, len, &csw);
			}
			if (len)
				mspin_end(&tl_spin, spin, mspin_won(ready, csw), ivs_now_ns() - t0);
			if (ready)
				continue;
		}
		spun = true;
		if (ivs_sig_count() != sig0) {
			/* A handler ran while we spun: epoll_wait never restarts. */
			errno = EINTR;
			return -1;
		}
		nw = mux_sleep_begin(wk);
		mux_arm_slice = false;
		pthread_mutex_lock(&ep->lock);
		ready = ep_arm_depth(ep, 0);
		offered = ep->noffered > 0;
		pthread_mutex_unlock(&ep->lock);
		if (ready) {
			for (int i = 0; i < nw; i++)
				wk[i].revents = 0;
			mux_sleep_end(wk, nw);
			continue;
		}
		r = ep_sleep(epfd, deadline, ss, wk, nw, offered);
		if (r < 0)
			return -1;
		if (r) {
			pthread_mutex_lock(&ep->lock);
			ep->kpoke = true;
			pthread_mutex_unlock(&ep->lock);
		}
	}
}

MUX_EXPORT int epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout)
{
	return ep_wait(W_WAIT, epfd, ev, max, timeout, NULL, NULL);
}

MUX_EXPORT int epoll_pwait(int epfd, struct epoll_event *ev, int max, int timeout,
			   const sigset_t *ss)
{
	return ep_wait(W_PWAIT, epfd, ev, max, timeout, NULL, ss);
}

MUX_EXPORT int epoll_pwait2(int epfd, struct epoll_event *ev, int max,
			    const struct timespec *ts, const sigset_t *ss)
{
	return ep_wait(W_PWAIT2, epfd, ev, max, -1, ts, ss);
}

/* ------------------------ hooks from the socket core ------------------------ */

/* Run fn on every side table holding fd, each under its lock. */
static void for_each_holder(int fd, void (*fn)(struct mux_ep *, struct ep_ent *, void *),
			    void *arg)
{
	pthread_mutex_lock(&tab_lock);
	for (int i = 0; i < n_eps; i++) {
		struct mux_ep *ep = all_eps[i];
		struct ep_ent *e;

		pthread_mutex_lock(&ep->lock);
		e = ent_find(ep, fd);
		if (e)
			fn(ep, e, arg);
		pthread_mutex_unlock(&ep->lock);
	}
	pthread_mutex_unlock(&tab_lock);
}

static void closed_one(struct mux_ep *ep, struct ep_ent *e, void *arg)
{
	int nfds = *(int *)arg;

	if (e->kind == E_ACC && nfds > 1) {
		/* the file lives on through a dup: so does its registration */
		ent_unindex(ep, e);
		atomic_fetch_add(&n_zombies, 1);
	} else {
		ent_remove(ep, e);
	}
}

/* Zombie entries of s (fd numbers already closed) go with its last fd. */
static void drop_zombies(struct ivs_sock *s)
{
	pthread_mutex_lock(&tab_lock);
	for (int i = 0; i < n_eps; i++) {
		struct mux_ep *ep = all_eps[i];

		pthread_mutex_lock(&ep->lock);
		for (int j = 0; j < ep->nspec; j++) {
			struct ep_ent *e = ep->spec[j];

			if (e->fd < 0 && e->sock == s) {
				ent_remove(ep, e);
				j--;
			}
		}
		pthread_mutex_unlock(&ep->lock);
	}
	pthread_mutex_unlock(&tab_lock);
}

void ivs_mux_fd_closed(int fd)
{
	struct slot *sl = slot_at(fd, false);
	struct mux_ep *ep;
	struct ivs_sock *s;
	int nfds = 1;

	if (!sl)
		return;
	ep = atomic_load_explicit(&sl->ep, memory_order_acquire);
	if (ep && ep->known) { /* an epoll fd: its table goes with it */
		pthread_mutex_lock(&ep->lock);
		ep_clear(ep);
		ep->known = false;
		pthread_mutex_unlock(&ep->lock);
	}
	if (!atomic_load(&sl->nreg) && !atomic_load(&n_zombies))
		return;
	s = ivs_sock_get(fd);
	if (s && ivs_sock_nfds)
		nfds = ivs_sock_nfds(s);
	if (atomic_load(&sl->nreg))
		for_each_holder(fd, closed_one, &nfds);
	if (s && nfds <= 1 && atomic_load(&n_zombies))
		drop_zombies(s);
	if (s)
		ivs_sock_put(s);
}

static void accel_one(struct mux_ep *ep, struct ep_ent *e, void *arg)
{
	struct epoll_event kev = { .events = e->events, .data.u64 = tag_of(e->fd) };
	struct epoll_event uev = { .events = e->events, .data = e->data };
	struct ivs_sock *s;
	struct ep_ent *ne;
	int fd = e->fd;
	/* promoted (arg): both directions are still on TCP, and the
	 * registration's EPOLLOUT also wakes a thread asleep in the kernel's
	 * epoll_wait on this set (the MOD re-evaluates readiness) */
	uint32_t io = arg ? (EPOLLIN | EPOLLOUT) : 0;

	if (e->kind != E_PLAIN)
		return;
	s = ivs_sock_get(fd); /* the entry's own reference */
	if (!s)
		return;
	/* still registered in the kernel? (else a stale entry) */
	if (ivs_real.epoll_ctl(ep->epfd, EPOLL_CTL_MOD, fd, &kev) < 0) {
		ivs_sock_put(s);
		ent_remove(ep, e);
		return;
	}
	kernel_watch(ep->epfd, fd, uev.events, s, io);
	record(ep, fd, E_ACC, &uev, s); /* replaces e */
	ne = ent_find(ep, fd);
	if (ne && ne->sock == s)
		ne->kio = io;
}

/* promoted: accel_one's arg (the sleeper's wake-up) */
static void accel_fd(int fd, bool promoted)
{
	struct slot *sl = slot_at(fd, false);
	struct ivs_sock *s;

	if (!sl || !atomic_load(&sl->nreg))
		return;
	s = ivs_sock_get(fd);
	if (!s)
		return;
	ivs_sock_put(s);
	for_each_holder(fd, accel_one, promoted ? (void *)1 : NULL);
}

void ivs_mux_fd_accelerated(int fd)
{
	accel_fd(fd, false);
}

void ivs_mux_fd_promoted(int fd)
{
	accel_fd(fd, true);
}

static void plain_one(struct mux_ep *ep, struct ep_ent *e, void *arg)
{
	struct epoll_event uev = { .events = e->events, .data = e->data };
	struct epoll_event kev = uev;
	int fd = e->fd;

	(void)arg;
	if (e->kind != E_ACC)
		return;
	if (e->disabled) /* a one-shot that fired stays disabled */
		kev.events = EPOLLONESHOT;
	if (ivs_real.epoll_ctl(ep->epfd, EPOLL_CTL_MOD, fd, &kev) < 0) {
		ent_remove(ep, e);
		return;
	}
	record(ep, fd, E_PLAIN, &uev, NULL); /* replaces e */
}

void ivs_mux_fd_plain(int fd)
{
	struct slot *sl = slot_at(fd, false);

	if (!sl || !atomic_load(&sl->nreg))
		return;
	for_each_holder(fd, plain_one, NULL);
}
