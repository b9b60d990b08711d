// SPDX-License-Identifier: MIT
/*
 * Unit tests of the epoll interposers of libivsock.so (preload/mux_epoll.c)
 * against a fake socket core: level, edge and one-shot ring readiness, the
 * kernel's errors, one fd in several sets, close and dup, fds turning
 * accelerated or plain, fairness at maxevents, cascades, threads and fork.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <sys/wait.h>

#include "mux_fake.h"

static int setup(void **state)
{
	(void)state;
	fake_init();
	atomic_store(&fake_spin, 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	assert_int_equal(atomic_load(&fake_refs_out), 0);
	return 0;
}

static int ep_new(void)
{
	int ep = epoll_create1(EPOLL_CLOEXEC);

	assert_true(ep >= 0);
	return ep;
}

static void ep_close(int ep)
{
	ivs_mux_fd_closed(ep); /* as the core's close() does */
	close(ep);
}

static int add(int ep, int fd, uint32_t events, uint64_t data)
{
	struct epoll_event ev = { .events = events, .data.u64 = data };

	return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

static int mod(int ep, int fd, uint32_t events, uint64_t data)
{
	struct epoll_event ev = { .events = events, .data.u64 = data };

	return epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
}

/* Plain fds: the kernel's answer. */
static void test_plain(void **state)
{
	int ep = ep_new(), a[2];
	struct epoll_event ev[4];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, a), 0);
	assert_int_equal(add(ep, a[0], EPOLLIN, 11), 0);
	assert_int_equal(epoll_wait(ep, ev, 4, 0), 0);
	assert_int_equal(write(a[1], "x", 1), 1);
	assert_int_equal(epoll_wait(ep, ev, 4, -1), 1);
	assert_int_equal(ev[0].data.u64, 11);
	assert_int_equal(ev[0].events, EPOLLIN);
	ep_close(ep);
	close(a[0]);
	close(a[1]);
}

/* Level-triggered ring readiness; the always-writable kernel socket and its
 * kernel data are never reported. */
static void test_acc_level(void **state)
{
	int ep = ep_new(), f[2];
	struct ivs_sock *s = fake_sock_new(f);
	struct epoll_event ev[4];

	(void)state;
	assert_int_equal(add(ep, f[0], EPOLLIN | EPOLLOUT, 42), 0);
	assert_int_equal(write(f[1], "k", 1), 1);
	assert_int_equal(epoll_wait(ep, ev, 4, 0), 0);
	fake_set(s, POLLIN);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(epoll_wait(ep, ev, 4, 0), 1);
		assert_int_equal(ev[0].events, EPOLLIN);
		assert_int_equal(ev[0].data.u64, 42);
	}
	fake_set(s, POLLIN | POLLOUT | POLLRDHUP);
	assert_int_equal(epoll_wait(ep, ev, 4, 0), 1);
	assert_int_equal(ev[0].events, EPOLLIN | EPOLLOUT); /* RDHUP not asked */
	assert_int_equal(mod(ep, f[0], EPOLLIN | EPOLLRDHUP, 43), 0);
	assert_int_equal(epoll_wait(ep, ev, 4, 0), 1);
	assert_int_equal(ev[0].events, EPOLLIN | EPOLLRDHUP);
	assert_int_equal(ev[0].data.u64, 43);
	fake_set(s, POLLHUP | POLLERR);
	assert_int_equal(epoll_wait(ep, ev, 4, 0), 1);
	assert_int_equal(ev[0].events, EPOLLHUP | EPOLLERR);
	ep_close(ep);
	fake_sock_free(s, f);
}

/* Edge-triggered: once per change of the event counter. */
static void test_acc_edge(void **state)
{
	int ep = ep_new(), f[2];
	struct ivs_sock *s = fake_sock_new(f);
	struct epoll_event ev[4];

	(void)state;
	fake_set(s, POLLOUT);
	assert_int_equal(add(ep, f[0], EPOLLIN | EPOLLOUT | EPOLLET, 1), 0);
	assert_int_equal(epoll_wait(ep, ev, 4, 0), 1); /* ready at ADD */
	assert_int_equal(ev[0].events, EPOLLOUT);
	assert_int_equal(epoll_wait(ep, ev, 4, 0), 0);
	fake_set(s, POLLIN | POLLOUT);
	assert_int_equal(epoll_wait(ep, ev, 4, 0), 1);
	assert_int_equal(ev[0].events, EPOLLIN | EPOLLOUT);
	assert_int_equal(epoll_wait(ep, ev, 4, 0), 0);
	/* MOD reports the current state again */
	assert_int_equal(mod(ep, f[0], EPOLLIN | EPOLLET, 2), 0);
	assert_int_equal(epoll_wait(ep, ev, 4, 0), 1);
	assert_int_equal(ev[0].events, EPOLLIN);
	/* sleeping for the next edge */
	{
		struct later l = { .s = s, .ready = POLLIN | POLLOUT, .ms = 20, .wfd = -1 };
		pthread_t t = later(&l);

		assert_int_equal(epoll_wait(ep, ev, 4, -1), 1);
		assert_int_equal(ev[0].data.u64, 2);
		pthread_join(t, NULL);
	}
	ep_close(ep);
	fake_sock_free(s, f);
}

/* Edge-triggered IN|OUT with the read side at EOF for good (reported):
 * the wait for the write side must still be armed and woken (an event loop
 * that half-closed: cf_evloop). */
static void test_edge_other_direction(void **state)
{
	int ep = ep_new(), f[2];
	struct ivs_sock *s = fake_sock_new(f);
	struct epoll_event ev[2];
	struct later l = { .s = s, .ready = POLLIN | POLLRDHUP | POLLOUT, .ms = 20, .wfd = -1 };
	pthread_t t;

	(void)state;
	fake_set(s, POLLIN | POLLRDHUP);
	assert_int_equal(add(ep, f[0], EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, 1), 0);
	assert_int_equal(epoll_wait(ep, ev, 2, 0), 1);
	assert_int_equal(ev[0].events, EPOLLIN | EPOLLRDHUP);
	t = later(&l);
	assert_int_equal(epoll_wait(ep, ev, 2, -1), 1);
	assert_int_equal(ev[0].events, EPOLLIN | EPOLLRDHUP | EPOLLOUT);
	pthread_join(t, NULL);
	ep_close(ep);
	fake_sock_free(s, f);
}

/* One-shot: reported once, then disabled until EPOLL_CTL_MOD. */
static void test_oneshot(void **state)
{
	int ep = ep_new(), f[2];
	struct ivs_sock *s = fake_sock_new(f);
	struct epoll_event ev[4];

	(void)state;
	fake_set(s, POLLIN);
	assert_int_equal(add(ep, f[0], EPOLLIN | EPOLLONESHOT, 3), 0);
	assert_int_equal(epoll_wait(ep, ev, 4, 0), 1);
	assert_int_equal(epoll_wait(ep, ev, 4, 0), 0);
	fake_set(s, POLLIN);
	assert_int_equal(epoll_wait(ep, ev, 4, 20), 0);
	assert_int_equal(mod(ep, f[0], EPOLLIN | EPOLLONESHOT, 4), 0);
	assert_int_equal(epoll_wait(ep, ev, 4, 0), 1);
	assert_int_equal(ev[0].data.u64, 4);
	ep_close(ep);
	fake_sock_free(s, f);
}

/* Errors come from the kernel, exactly. */
static void test_errors(void **state)
{
	int ep = ep_new(), f[2], a[2];
	struct ivs_sock *s = fake_sock_new(f);

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, a), 0);
	assert_int_equal(mod(ep, f[0], EPOLLIN, 0), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(epoll_ctl(ep, EPOLL_CTL_DEL, f[0], NULL), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(add(ep, f[0], EPOLLIN, 0), 0);
	assert_int_equal(add(ep, f[0], EPOLLIN, 0), -1);
	assert_int_equal(errno, EEXIST);
	assert_int_equal(add(ep, ep, EPOLLIN, 0), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(add(ep, 9999, EPOLLIN, 0), -1);
	assert_int_equal(errno, EBADF);
	assert_int_equal(add(a[0], f[0], EPOLLIN, 0), -1); /* not an epoll fd */
	assert_int_equal(errno, EINVAL);
	/* exclusive cannot be modified */
	assert_int_equal(add(ep, a[0], EPOLLIN | EPOLLEXCLUSIVE, 0), 0);
	assert_int_equal(mod(ep, a[0], EPOLLIN, 0), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(epoll_ctl(ep, EPOLL_CTL_DEL, f[0], NULL), 0);
	assert_int_equal(epoll_ctl(ep, EPOLL_CTL_DEL, f[0], NULL), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(mod(ep, f[0], EPOLLIN, 0), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(epoll_wait(ep, (struct epoll_event[1]){ 0 }, 0, 0), -1);
	assert_int_equal(errno, EINVAL);
	/* after DEL nothing is reported */
	fake_set(s, POLLIN);
	assert_int_equal(epoll_wait(ep, (struct epoll_event[1]){ 0 }, 1, 0), 0);
	ep_close(ep);
	close(a[0]);
	close(a[1]);
	fake_sock_free(s, f);
}

/* One socket in two sets with different data; DEL from one keeps the other. */
static void test_two_sets(void **state)
{
	int e1 = ep_new(), e2 = ep_new(), f[2];
	struct ivs_sock *s = fake_sock_new(f);
	struct epoll_event ev[2];

	(void)state;
	assert_int_equal(add(e1, f[0], EPOLLIN, 100), 0);
	assert_int_equal(add(e2, f[0], EPOLLIN | EPOLLET, 200), 0);
	fake_set(s, POLLIN);
	assert_int_equal(epoll_wait(e1, ev, 2, 0), 1);
	assert_int_equal(ev[0].data.u64, 100);
	assert_int_equal(epoll_wait(e2, ev, 2, 0), 1);
	assert_int_equal(ev[0].data.u64, 200);
	assert_int_equal(epoll_wait(e2, ev, 2, 0), 0);
	assert_int_equal(epoll_ctl(e1, EPOLL_CTL_DEL, f[0], NULL), 0);
	assert_int_equal(epoll_wait(e1, ev, 2, 0), 0);
	fake_set(s, POLLIN);
	assert_int_equal(epoll_wait(e2, ev, 2, 0), 1);
	ep_close(e1);
	ep_close(e2);
	fake_sock_free(s, f);
}

/* Accelerated and plain fds in one set; maxevents; nothing starves. */
static void test_mixed_fair(void **state)
{
	enum { N = 4 };
	int ep = ep_new(), f[N][2], a[2];
	struct ivs_sock *s[N];
	struct epoll_event ev[8];
	unsigned seen = 0;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, a), 0);
	assert_int_equal(add(ep, a[0], EPOLLIN, 99), 0);
	assert_int_equal(write(a[1], "x", 1), 1);
	for (int i = 0; i < N; i++) {
		s[i] = fake_sock_new(f[i]);
		assert_int_equal(add(ep, f[i][0], EPOLLIN, (uint64_t)i), 0);
		fake_set(s[i], POLLIN);
	}
	assert_int_equal(epoll_wait(ep, ev, 8, 0), N + 1);
	/* one at a time: every ready entry shows up within N + 1 calls */
	for (int i = 0; i < N + 1; i++) {
		assert_int_equal(epoll_wait(ep, ev, 1, 0), 1);
		seen |= 1U << (ev[0].data.u64 == 99 ? N : ev[0].data.u64);
	}
	assert_int_equal(seen, (1U << (N + 1)) - 1);
	for (int i = 0; i < N; i++)
		fake_sock_free(s[i], f[i]);
	ep_close(ep);
	close(a[0]);
	close(a[1]);
}

/* Sleep and wake: by the ring, by a plain fd, or time out (never early). */
static void test_sleep(void **state)
{
	int ep = ep_new(), f[2], a[2];
	struct ivs_sock *s = fake_sock_new(f);
	struct epoll_event ev[2];
	uint64_t t0;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, a), 0);
	assert_int_equal(add(ep, a[0], EPOLLIN, 7), 0);
	assert_int_equal(add(ep, f[0], EPOLLIN, 8), 0);
	for (int spin = 0; spin < 2; spin++) {
		struct later l = { .s = s, .ready = POLLIN, .ms = 20, .wfd = -1 };
		pthread_t t;

		atomic_store(&fake_spin, spin ? 100000 : 0);
		fake_set(s, 0);
		t = later(&l);
		assert_int_equal(epoll_wait(ep, ev, 2, -1), 1);
		assert_int_equal(ev[0].data.u64, 8);
		pthread_join(t, NULL);
	}
	{
		struct later l = { .ms = 20, .wfd = a[1] };
		pthread_t t;

		fake_set(s, 0);
		t = later(&l);
		assert_int_equal(epoll_pwait2(ep, ev, 2, NULL, NULL), 1);
		assert_int_equal(ev[0].data.u64, 7);
		pthread_join(t, NULL);
		assert_int_equal(read(a[0], (char[1]){ 0 }, 1), 1);
	}
	t0 = ivs_now_ns();
	assert_int_equal(epoll_wait(ep, ev, 2, 30), 0);
	assert_true(ivs_now_ns() - t0 >= 30000000ULL);
	t0 = ivs_now_ns();
	assert_int_equal(epoll_pwait2(ep, ev, 2, &(struct timespec){ 0, 20000000 }, NULL), 0);
	assert_true(ivs_now_ns() - t0 >= 20000000ULL);
	ep_close(ep);
	close(a[0]);
	close(a[1]);
	fake_sock_free(s, f);
}

static void on_usr1(int sig)
{
	(void)sig;
}

static void *kick_fn(void *arg)
{
	pthread_t *target = arg;

	for (int i = 0; i < 4000; i++) {
		sleep_ms(5);
		if (pthread_kill(*target, SIGUSR1) != 0)
			break;
	}
	return NULL;
}

/* EINTR through epoll_pwait with the caller's mask. */
static void test_eintr(void **state)
{
	int ep = ep_new(), f[2];
	struct ivs_sock *s = fake_sock_new(f);
	struct epoll_event ev[1];
	struct sigaction sa = { .sa_handler = on_usr1 };
	sigset_t blk, old, empty;
	pthread_t self = pthread_self(), t;

	(void)state;
	assert_int_equal(add(ep, f[0], EPOLLIN, 1), 0);
	sigaction(SIGUSR1, &sa, NULL);
	sigemptyset(&blk);
	sigaddset(&blk, SIGUSR1);
	sigemptyset(&empty);
	pthread_sigmask(SIG_BLOCK, &blk, &old);
	pthread_create(&t, NULL, kick_fn, &self);
	assert_int_equal(epoll_pwait(ep, ev, 1, -1, &empty), -1);
	assert_int_equal(errno, EINTR);
	pthread_cancel(t);
	pthread_join(t, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	ep_close(ep);
	fake_sock_free(s, f);
}

/* Close: the registration goes with the last fd of the open file. */
static void test_close_dup(void **state)
{
	int ep = ep_new(), f[2], d;
	struct ivs_sock *s = fake_sock_new(f);
	struct epoll_event ev[2];

	(void)state;
	assert_int_equal(add(ep, f[0], EPOLLIN, 5), 0);
	fake_set(s, POLLIN);
	d = fake_dup(f[0]);
	assert_true(d >= 0);
	fake_close(f[0]); /* a dup keeps the file: still reported */
	assert_int_equal(epoll_wait(ep, ev, 2, 0), 1);
	assert_int_equal(ev[0].data.u64, 5);
	fake_close(d); /* the last one: gone */
	assert_int_equal(epoll_wait(ep, ev, 2, 0), 0);
	/* a new socket reusing the number starts clean */
	{
		int g[2];
		struct ivs_sock *s2 = fake_sock_new(g);

		fake_set(s2, POLLIN);
		assert_int_equal(epoll_wait(ep, ev, 2, 0), 0);
		assert_int_equal(add(ep, g[0], EPOLLIN, 6), 0);
		assert_int_equal(epoll_wait(ep, ev, 2, 0), 1);
		assert_int_equal(ev[0].data.u64, 6);
		fake_sock_free(s2, g);
	}
	close(f[1]);
	free(s);
	ep_close(ep);
}

/* The epoll fd closed and its number made again: an empty table. */
static void test_epfd_reuse(void **state)
{
	int ep = ep_new(), f[2], ep2;
	struct ivs_sock *s = fake_sock_new(f);
	struct epoll_event ev[2];

	(void)state;
	fake_set(s, POLLIN);
	assert_int_equal(add(ep, f[0], EPOLLIN, 5), 0);
	close(ep); /* without the hook: epoll_create1 must clean */
	ep2 = ep_new();
	assert_int_equal(ep2, ep);
	assert_int_equal(epoll_wait(ep2, ev, 2, 0), 0);
	assert_int_equal(add(ep2, f[0], EPOLLIN, 6), 0);
	assert_int_equal(epoll_wait(ep2, ev, 2, 0), 1);
	assert_int_equal(ev[0].data.u64, 6);
	ep_close(ep2);
	fake_sock_free(s, f);
}

/* A registered plain fd becomes accelerated (connect attached), then one
 * falls back to TCP. */
static void test_turn_acc_and_plain(void **state)
{
	int ep = ep_new(), f[2];
	struct ivs_sock *s;
	struct epoll_event ev[2];

	(void)state;
	s = fake_sock_new(f);
	atomic_store(&fake_tab[f[0]], NULL); /* plain for now */
	assert_int_equal(add(ep, f[0], EPOLLIN | EPOLLOUT, 9), 0);
	assert_int_equal(epoll_wait(ep, ev, 2, 0), 1); /* the kernel: writable */
	assert_int_equal(ev[0].events, EPOLLOUT);
	atomic_store(&fake_tab[f[0]], s);
	ivs_mux_fd_accelerated(f[0]);
	assert_int_equal(epoll_wait(ep, ev, 2, 0), 0); /* the ring: nothing */
	fake_set(s, POLLIN);
	assert_int_equal(epoll_wait(ep, ev, 2, 0), 1);
	assert_int_equal(ev[0].events, EPOLLIN);
	assert_int_equal(ev[0].data.u64, 9);
	atomic_store(&s->plain, 1);
	ivs_mux_fd_plain(f[0]);
	assert_int_equal(epoll_wait(ep, ev, 2, 0), 1); /* the kernel again */
	assert_int_equal(ev[0].events, EPOLLOUT);
	assert_int_equal(ev[0].data.u64, 9);
	atomic_store(&s->plain, 0);
	ep_close(ep);
	fake_sock_free(s, f);
}

/* A connector waiting for its acceptor whose kernel socket gets data falls
 * back inside ivs_sock_poll (no hook): the set must notice by itself. */
static void test_offered_fallback(void **state)
{
	int ep = ep_new(), f[2];
	struct ivs_sock *s = fake_sock_new(f);
	struct epoll_event ev[2];
	struct later l = { .ms = 20, .wfd = f[1] };
	pthread_t t;
	int r;

	(void)state;
	atomic_store(&s->kev, POLLIN | POLLRDHUP);
	assert_int_equal(add(ep, f[0], EPOLLIN, 12), 0);
	t = later(&l);
	for (;;) {
		struct pollfd k = { .fd = f[0], .events = POLLIN };

		r = epoll_wait(ep, ev, 2, 5);
		if (r)
			break;
		if (ivs_real.poll(&k, 1, 0) == 1) /* what the core would do */
			atomic_store(&s->plain, 1);
	}
	assert_int_equal(r, 1);
	assert_int_equal(ev[0].events, EPOLLIN);
	assert_int_equal(ev[0].data.u64, 12);
	pthread_join(t, NULL);
	/* and now plain: the kernel answers (level-triggered) */
	assert_int_equal(epoll_wait(ep, ev, 2, 0), 1);
	atomic_store(&s->plain, 0);
	ep_close(ep);
	fake_sock_free(s, f);
}

/* Cascade: an epoll set inside another; the outer wait wakes on the inner
 * set's ring readiness. */
static void test_cascade(void **state)
{
	int in = ep_new(), out = ep_new(), f[2];
	struct ivs_sock *s = fake_sock_new(f);
	struct epoll_event ev[2];
	struct later l = { .s = s, .ready = POLLIN, .ms = 20, .wfd = -1 };
	pthread_t t;

	(void)state;
	assert_int_equal(add(in, f[0], EPOLLIN, 1), 0);
	assert_int_equal(add(out, in, EPOLLIN, 2), 0);
	assert_int_equal(epoll_wait(out, ev, 2, 0), 0);
	t = later(&l);
	assert_int_equal(epoll_wait(out, ev, 2, -1), 1);
	assert_int_equal(ev[0].data.u64, 2);
	assert_int_equal(epoll_wait(in, ev, 2, 0), 1);
	assert_int_equal(ev[0].data.u64, 1);
	pthread_join(t, NULL);
	/* a cycle is refused by the kernel */
	assert_int_equal(add(in, out, EPOLLIN, 3), -1);
	assert_int_equal(errno, ELOOP);
	ep_close(out);
	ep_close(in);
	fake_sock_free(s, f);
}

/* Threads: waiters on one set, ctl churn and readiness flips meanwhile. */
struct churn {
	int ep;
	int fd[4][2];
	struct ivs_sock *s[4];
	atomic_int stop;
	atomic_long got;
};

static void *churn_wait(void *arg)
{
	struct churn *c = arg;
	struct epoll_event ev[4];

	while (!atomic_load(&c->stop)) {
		int r = epoll_wait(c->ep, ev, 4, 10);

		if (r > 0)
			atomic_fetch_add(&c->got, r);
		else if (r < 0 && errno != EINTR)
			abort();
	}
	return NULL;
}

static void *churn_ctl(void *arg)
{
	struct churn *c = arg;

	for (int i = 0; i < 2000; i++) {
		int k = i % 4;

		if (epoll_ctl(c->ep, EPOLL_CTL_DEL, c->fd[k][0], NULL) == 0)
			add(c->ep, c->fd[k][0], EPOLLIN | (i & 1 ? EPOLLET : 0), (uint64_t)k);
		fake_set(c->s[(k + 1) % 4], i & 2 ? POLLIN : 0);
	}
	atomic_store(&c->stop, 1);
	return NULL;
}

static void test_threads(void **state)
{
	struct churn c = { .ep = ep_new() };
	pthread_t w[2], ctl;

	(void)state;
	for (int i = 0; i < 4; i++) {
		c.s[i] = fake_sock_new(c.fd[i]);
		assert_int_equal(add(c.ep, c.fd[i][0], EPOLLIN, (uint64_t)i), 0);
	}
	pthread_create(&w[0], NULL, churn_wait, &c);
	pthread_create(&w[1], NULL, churn_wait, &c);
	pthread_create(&ctl, NULL, churn_ctl, &c);
	pthread_join(ctl, NULL);
	pthread_join(w[0], NULL);
	pthread_join(w[1], NULL);
	assert_true(atomic_load(&c.got) > 0);
	ep_close(c.ep);
	for (int i = 0; i < 4; i++)
		fake_sock_free(c.s[i], c.fd[i]);
}

/* fork: the child inherits the set and its side table. */
static void test_fork(void **state)
{
	int ep = ep_new(), f[2], st;
	struct ivs_sock *s = fake_sock_new(f);
	pid_t pid;

	(void)state;
	assert_int_equal(add(ep, f[0], EPOLLIN, 77), 0);
	fake_set(s, POLLIN);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct epoll_event ev[2];
		int r = epoll_wait(ep, ev, 2, 0);

		_exit(r == 1 && ev[0].data.u64 == 77 ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ep_close(ep);
	fake_sock_free(s, f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_plain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_acc_level, setup, teardown),
		cmocka_unit_test_setup_teardown(test_acc_edge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_edge_other_direction, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oneshot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_two_sets, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mixed_fair, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sleep, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eintr, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_dup, setup, teardown),
		cmocka_unit_test_setup_teardown(test_epfd_reuse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_turn_acc_and_plain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_offered_fallback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cascade, setup, teardown),
		cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fork, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
