/* SPDX-License-Identifier: MIT */
/*
 * A fake socket core for the multiplexer unit tests: "accelerated" sockets
 * are AF_UNIX socketpair ends (always kernel-writable, like TCP) whose ring
 * readiness the test sets by hand; a wake-up is sent on the process eventfd
 * only when the multiplexer armed the socket, so a missing arm hangs the
 * test (and the runner's timeout fails it).
 */
#ifndef IVS_MUX_FAKE_H
#define IVS_MUX_FAKE_H

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include "../mux.h"

#define FAKE_MAXFD 4096

struct ivs_sock {
	int fd;
	_Atomic unsigned ready;   /* ring readiness */
	_Atomic uint64_t seq;     /* event counter */
	_Atomic unsigned armed;   /* events the multiplexer armed for */
	_Atomic int refs;
	_Atomic int nfds;
	_Atomic unsigned kev;     /* ivs_sock_kernel_events() */
	_Atomic int plain;        /* fell back to TCP */
	_Atomic int arms;         /* how many times armed (statistics) */
};

struct ivs_real ivs_real;
int ivs_log_level;
static struct ivs_sock *_Atomic fake_tab[FAKE_MAXFD];
static int fake_wake = -1;
static _Atomic uint64_t fake_spin;
static _Atomic int fake_refs_out;
static pthread_mutex_t fake_sleep_lock = PTHREAD_MUTEX_INITIALIZER;
static int fake_sleepers[64];
static int fake_nsleepers;

void ivs_real_init(void)
{
#define R(name) ivs_real.name = (__typeof__(ivs_real.name))dlsym(RTLD_NEXT, #name)
	R(socket); R(close); R(poll); R(ppoll); R(select); R(pselect);
	R(epoll_create); R(epoll_create1); R(epoll_ctl); R(epoll_wait);
	R(epoll_pwait); R(epoll_pwait2);
#undef R
}

void ivs_log(int level, const char *fmt, ...)
{
	va_list ap;

	if (level > IVS_LOG_WARN)
		return;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

struct ivs_sock *ivs_sock_get(int fd)
{
	struct ivs_sock *s;

	if (fd < 0 || fd >= FAKE_MAXFD)
		return NULL;
	s = atomic_load(&fake_tab[fd]);
	if (!s || atomic_load(&s->plain))
		return NULL;
	atomic_fetch_add(&s->refs, 1);
	atomic_fetch_add(&fake_refs_out, 1);
	return s;
}

void ivs_sock_put(struct ivs_sock *s)
{
	if (!s)
		return;
	atomic_fetch_sub(&s->refs, 1);
	atomic_fetch_sub(&fake_refs_out, 1);
}

unsigned ivs_sock_poll(struct ivs_sock *s, unsigned events)
{
	if (atomic_load(&s->plain)) { /* as the core: the kernel answers */
		struct pollfd p = { .fd = s->fd, .events = (short)events };

		if (ivs_real.poll(&p, 1, 0) > 0)
			return (unsigned)p.revents;
		return 0;
	}
	return atomic_load(&s->ready) & (events | POLLERR | POLLHUP);
}

unsigned ivs_sock_arm(struct ivs_sock *s, unsigned events)
{
	unsigned r = ivs_sock_poll(s, events);

	if (r) /* as the core: nothing is armed when something is ready */
		return r;
	atomic_fetch_or(&s->armed, events | POLLERR | POLLHUP);
	atomic_fetch_add(&s->arms, 1);
	return ivs_sock_poll(s, events); /* seq_cst: the "full fence" */
}

uint64_t ivs_sock_event_seq(struct ivs_sock *s)
{
	return atomic_load(&s->seq);
}

int ivs_sock_nfds(struct ivs_sock *s)
{
	return atomic_load(&s->nfds);
}

unsigned ivs_sock_kernel_events(struct ivs_sock *s)
{
	return atomic_load(&s->kev);
}

unsigned ivs_sock_kernel_io(struct ivs_sock *s)
{
	(void)s;
	return 0;
}

int ivs_wake_fd(void)
{
	return fake_wake;
}

static void fake_broadcast(void)
{
	uint64_t one = 1;

	pthread_mutex_lock(&fake_sleep_lock);
	for (int i = 0; i < fake_nsleepers; i++)
		if (write(fake_sleepers[i], &one, 8) != 8)
			abort();
	pthread_mutex_unlock(&fake_sleep_lock);
}

void ivs_wake_drain(void)
{
	uint64_t v;

	if (fake_wake >= 0 && read(fake_wake, &v, 8) == 8)
		fake_broadcast();
}

void ivs_wake_sleeper_add(int efd)
{
	pthread_mutex_lock(&fake_sleep_lock);
	fake_sleepers[fake_nsleepers++] = efd;
	pthread_mutex_unlock(&fake_sleep_lock);
}

void ivs_wake_sleeper_del(int efd)
{
	pthread_mutex_lock(&fake_sleep_lock);
	for (int i = 0; i < fake_nsleepers; i++)
		if (fake_sleepers[i] == efd) {
			fake_sleepers[i] = fake_sleepers[--fake_nsleepers];
			break;
		}
	pthread_mutex_unlock(&fake_sleep_lock);
}

unsigned ivs_sig_count(void)
{
	return 0;
}

uint64_t ivs_spin_ns(void)
{
	return atomic_load(&fake_spin);
}

uint64_t ivs_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* ---- test side ---- */

static inline void fake_init(void)
{
	ivs_real_init();
	if (fake_wake < 0)
		fake_wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

/* An accelerated socket: fd[0] is registered, fd[1] is its kernel peer. */
static inline struct ivs_sock *fake_sock_new(int fd[2])
{
	struct ivs_sock *s = calloc(1, sizeof(*s));

	if (!s || socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fd) < 0)
		abort();
	s->fd = fd[0];
	s->nfds = 1;
	atomic_store(&fake_tab[fd[0]], s);
	return s;
}

/* Set the ring readiness; ring the doorbell if the multiplexer armed. */
static inline void fake_set(struct ivs_sock *s, unsigned ready)
{
	unsigned armed;
	uint64_t one = 1;

	atomic_store(&s->ready, ready);
	atomic_fetch_add(&s->seq, 1);
	armed = atomic_load(&s->armed);
	if (armed & ready && atomic_exchange(&s->armed, 0)) {
		if (write(fake_wake, &one, 8) != 8)
			abort();
	}
}

/* Close an accelerated fd as the core does: hook first, then the fd. */
static inline void fake_close(int fd)
{
	struct ivs_sock *s = fd >= 0 && fd < FAKE_MAXFD ? atomic_load(&fake_tab[fd]) : NULL;

	ivs_mux_fd_closed(fd);
	if (s) {
		atomic_store(&fake_tab[fd], NULL);
		atomic_fetch_sub(&s->nfds, 1);
	}
	close(fd);
}

/* dup an accelerated fd (the core's dup shares the socket). */
static inline int fake_dup(int fd)
{
	struct ivs_sock *s = atomic_load(&fake_tab[fd]);
	int n = dup(fd);

	if (n >= 0 && s) {
		atomic_fetch_add(&s->nfds, 1);
		atomic_store(&fake_tab[n], s);
	}
	return n;
}

static inline void fake_sock_free(struct ivs_sock *s, int fd[2])
{
	if (atomic_load(&fake_tab[fd[0]]) == s)
		fake_close(fd[0]);
	close(fd[1]);
	free(s);
}

static inline void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Set readiness of s from another thread after ms milliseconds. */
struct later {
	struct ivs_sock *s;
	unsigned ready;
	int ms;
	int wfd; /* or: write a byte to this fd instead (>= 0) */
};

static void *later_fn(void *arg)
{
	struct later *l = arg;

	sleep_ms(l->ms);
	if (l->wfd >= 0) {
		if (write(l->wfd, "x", 1) != 1)
			abort();
	} else {
		fake_set(l->s, l->ready);
	}
	return NULL;
}

static inline pthread_t later(struct later *l)
{
	pthread_t t;

	pthread_create(&t, NULL, later_fn, l);
	return t;
}

#endif
