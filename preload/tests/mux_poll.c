// SPDX-License-Identifier: MIT
/*
 * Unit tests of poll, ppoll, select and pselect of libivsock.so
 * (preload/mux_poll.c) against a fake socket core: ring readiness replaces
 * the kernel's for accelerated fds, plain fds keep the kernel's answer,
 * sleeping and waking, timeouts, signals, fd_set semantics.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

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
	assert_int_equal(atomic_load(&fake_refs_out), 0); /* no reference leaked */
	return 0;
}

/* Plain fds only: the kernel's answer, untouched. */
static void test_plain_only(void **state)
{
	int a[2];
	struct pollfd p[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, a), 0);
	assert_int_equal(write(a[1], "x", 1), 1);
	p[0] = (struct pollfd){ .fd = a[0], .events = POLLIN };
	p[1] = (struct pollfd){ .fd = a[1], .events = POLLIN };
	assert_int_equal(poll(p, 2, 0), 1);
	assert_int_equal(p[0].revents, POLLIN);
	assert_int_equal(p[1].revents, 0);
	close(a[0]);
	close(a[1]);
}

/* The kernel socket of an accelerated fd is always writable: the ring is
 * the truth. */
static void test_acc_ring_not_kernel(void **state)
{
	int f[2];
	struct ivs_sock *s = fake_sock_new(f);
	struct pollfd p = { .fd = f[0], .events = POLLIN | POLLOUT };

	(void)state;
	assert_int_equal(write(f[1], "k", 1), 1); /* kernel readable too: ignored */
	assert_int_equal(poll(&p, 1, 0), 0);
	assert_int_equal(p.revents, 0);
	fake_set(s, POLLOUT);
	assert_int_equal(poll(&p, 1, 0), 1);
	assert_int_equal(p.revents, POLLOUT);
	fake_set(s, POLLIN | POLLOUT | POLLRDHUP);
	p.events = POLLIN | POLLRDNORM;
	assert_int_equal(poll(&p, 1, 0), 1);
	assert_int_equal(p.revents, POLLIN | POLLRDNORM);
	p.events = POLLIN | POLLRDHUP;
	assert_int_equal(poll(&p, 1, 0), 1);
	assert_int_equal(p.revents, POLLIN | POLLRDHUP);
	/* HUP and ERR are reported whatever was asked */
	fake_set(s, POLLERR | POLLHUP);
	p.events = POLLOUT;
	assert_int_equal(poll(&p, 1, 0), 1);
	assert_int_equal(p.revents, POLLERR | POLLHUP);
	fake_sock_free(s, f);
}

/* Mixed set: order, revents of plain fds, negative fds, the count. */
static void test_mixed_order(void **state)
{
	int a[2], f[2], b[2];
	struct ivs_sock *s = fake_sock_new(f);
	struct pollfd p[5];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, a), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, b), 0);
	assert_int_equal(write(a[1], "x", 1), 1);
	fake_set(s, POLLIN | POLLOUT);
	p[0] = (struct pollfd){ .fd = a[0], .events = POLLIN };
	p[1] = (struct pollfd){ .fd = -1, .events = POLLIN, .revents = 77 };
	p[2] = (struct pollfd){ .fd = f[0], .events = POLLIN };
	p[3] = (struct pollfd){ .fd = b[0], .events = POLLIN };
	p[4] = (struct pollfd){ .fd = b[0], .events = POLLOUT };
	assert_int_equal(poll(p, 5, 0), 3);
	assert_int_equal(p[0].revents, POLLIN);
	assert_int_equal(p[1].revents, 0);
	assert_int_equal(p[2].revents, POLLIN);
	assert_int_equal(p[3].revents, 0);
	assert_int_equal(p[4].revents, POLLOUT);
	/* accelerated entry ready alone still brings the plain answer */
	assert_int_equal(read(a[0], (char[1]){ 0 }, 1), 1);
	assert_int_equal(poll(p, 4, -1), 1);
	assert_int_equal(p[2].revents, POLLIN);
	assert_int_equal(p[0].revents, 0);
	close(a[0]);
	close(a[1]);
	close(b[0]);
	close(b[1]);
	fake_sock_free(s, f);
}

/* Sleep until another thread makes the ring readable (the wake-up only comes
 * if poll armed the socket). With and without spinning. */
static void test_sleep_wake(void **state)
{
	int f[2], a[2];
	struct ivs_sock *s = fake_sock_new(f);
	struct pollfd p[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, a), 0);
	for (int spin = 0; spin < 2; spin++) {
		struct later l = { .s = s, .ready = POLLIN, .ms = 20, .wfd = -1 };
		pthread_t t;

		atomic_store(&fake_spin, spin ? 200000 : 0);
		fake_set(s, 0);
		p[0] = (struct pollfd){ .fd = a[0], .events = POLLIN };
		p[1] = (struct pollfd){ .fd = f[0], .events = POLLIN };
		t = later(&l);
		assert_int_equal(poll(p, 2, -1), 1);
		assert_int_equal(p[1].revents, POLLIN);
		assert_int_equal(p[0].revents, 0);
		pthread_join(t, NULL);
	}
	/* a plain fd wakes the sleeper too */
	{
		struct later l = { .ms = 20, .wfd = a[1] };
		pthread_t t;

		fake_set(s, 0);
		t = later(&l);
		assert_int_equal(poll(p, 2, -1), 1);
		assert_int_equal(p[0].revents, POLLIN);
		assert_int_equal(p[1].revents, 0);
		pthread_join(t, NULL);
	}
	assert_true(atomic_load(&s->arms) > 0);
	close(a[0]);
	close(a[1]);
	fake_sock_free(s, f);
}

/* A timeout never returns 0 before it expired; the wake fd never shows. */
static void test_timeout(void **state)
{
	int f[2];
	struct ivs_sock *s = fake_sock_new(f);
	struct pollfd p = { .fd = f[0], .events = POLLIN | POLLOUT };
	uint64_t t0 = ivs_now_ns();
	struct timespec ts = { 0, 30000000 };
	uint64_t one = 1;

	(void)state;
	/* a stray wake-up with nothing ready must not end the wait */
	assert_int_equal(write(fake_wake, &one, 8), 8);
	assert_int_equal(poll(&p, 1, 30), 0);
	assert_true(ivs_now_ns() - t0 >= 30000000ULL);
	assert_int_equal(p.revents, 0);
	t0 = ivs_now_ns();
	assert_int_equal(ppoll(&p, 1, &ts, NULL), 0);
	assert_true(ivs_now_ns() - t0 >= 30000000ULL);
	ts.tv_nsec = 1000000000L;
	assert_int_equal(ppoll(&p, 1, &ts, NULL), -1);
	assert_int_equal(errno, EINVAL);
	fake_sock_free(s, f);
}

static void on_usr1(int sig)
{
	(void)sig;
}

struct kicker {
	pthread_t target;
	atomic_int stop;
};

static void *kick_fn(void *arg)
{
	struct kicker *k = arg;

	while (!atomic_load(&k->stop)) {
		sleep_ms(5);
		pthread_kill(k->target, SIGUSR1);
	}
	return NULL;
}

/* EINTR passes through; ppoll sleeps with the caller's signal mask. */
static void test_eintr(void **state)
{
	int f[2];
	struct ivs_sock *s = fake_sock_new(f);
	struct pollfd p = { .fd = f[0], .events = POLLIN };
	struct sigaction sa = { .sa_handler = on_usr1 };
	struct kicker k = { .target = pthread_self() };
	sigset_t blk, old, empty;
	pthread_t t;

	(void)state;
	sigaction(SIGUSR1, &sa, NULL); /* no SA_RESTART */
	t = (pthread_create(&t, NULL, kick_fn, &k), t);
	assert_int_equal(poll(&p, 1, -1), -1);
	assert_int_equal(errno, EINTR);
	/* blocked outside, unblocked only while sleeping inside ppoll */
	sigemptyset(&blk);
	sigaddset(&blk, SIGUSR1);
	sigemptyset(&empty);
	pthread_sigmask(SIG_BLOCK, &blk, &old);
	assert_int_equal(ppoll(&p, 1, NULL, &empty), -1);
	assert_int_equal(errno, EINTR);
	atomic_store(&k.stop, 1);
	pthread_join(t, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	fake_sock_free(s, f);
}

/* A closed plain fd next to an accelerated one: POLLNVAL, counted. */
static void test_nval(void **state)
{
	int f[2], a[2];
	struct ivs_sock *s = fake_sock_new(f);
	struct pollfd p[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, a), 0);
	close(a[0]);
	p[0] = (struct pollfd){ .fd = a[0], .events = POLLIN };
	p[1] = (struct pollfd){ .fd = f[0], .events = POLLIN };
	assert_int_equal(poll(p, 2, -1), 1);
	assert_int_equal(p[0].revents, POLLNVAL);
	assert_int_equal(p[1].revents, 0);
	close(a[1]);
	fake_sock_free(s, f);
}

/* More entries than the on-stack arrays hold. */
static void test_many(void **state)
{
	enum { N = 40 };
	int f[N][2];
	struct ivs_sock *s[N];
	struct pollfd p[N];

	(void)state;
	for (int i = 0; i < N; i++) {
		s[i] = fake_sock_new(f[i]);
		p[i] = (struct pollfd){ .fd = f[i][0], .events = POLLIN };
	}
	fake_set(s[7], POLLIN);
	fake_set(s[33], POLLIN);
	assert_int_equal(poll(p, N, -1), 2);
	for (int i = 0; i < N; i++)
		assert_int_equal(p[i].revents, (i == 7 || i == 33) ? POLLIN : 0);
	{
		struct later l = { .s = s[39], .ready = POLLIN, .ms = 10, .wfd = -1 };
		pthread_t t;

		fake_set(s[7], 0);
		fake_set(s[33], 0);
		t = later(&l);
		assert_int_equal(poll(p, N, -1), 1);
		assert_int_equal(p[39].revents, POLLIN);
		pthread_join(t, NULL);
	}
	for (int i = 0; i < N; i++)
		fake_sock_free(s[i], f[i]);
}

/* Several threads sleeping at once while another drains the process wake
 * fd: every one of them must still wake (sleeper registration). */
struct waiter {
	struct ivs_sock *s;
	int fd;
	atomic_int done;
};

static void *waiter_fn(void *arg)
{
	struct waiter *w = arg;
	struct pollfd p = { .fd = w->fd, .events = POLLIN };

	if (poll(&p, 1, -1) == 1 && p.revents == POLLIN)
		atomic_store(&w->done, 1);
	return NULL;
}

static atomic_int drain_stop;

static void *drainer_fn(void *arg)
{
	(void)arg;
	while (!atomic_load(&drain_stop)) {
		ivs_wake_drain();
		sched_yield();
	}
	return NULL;
}

static void test_threads_no_lost_wakeup(void **state)
{
	enum { T = 4, ROUNDS = 100 };
	int f[T][2];
	struct waiter w[T];
	pthread_t th[T], dr;

	(void)state;
	for (int i = 0; i < T; i++)
		w[i].s = fake_sock_new(f[i]);
	atomic_store(&drain_stop, 0);
	pthread_create(&dr, NULL, drainer_fn, NULL);
	for (int r = 0; r < ROUNDS; r++) {
		for (int i = 0; i < T; i++) {
			fake_set(w[i].s, 0);
			w[i].fd = f[i][0];
			atomic_store(&w[i].done, 0);
			pthread_create(&th[i], NULL, waiter_fn, &w[i]);
		}
		if (r & 1)
			sleep_ms(1);
		for (int i = 0; i < T; i++)
			fake_set(w[i].s, POLLIN);
		for (int i = 0; i < T; i++) {
			pthread_join(th[i], NULL);
			assert_int_equal(atomic_load(&w[i].done), 1);
		}
	}
	atomic_store(&drain_stop, 1);
	pthread_join(dr, NULL);
	for (int i = 0; i < T; i++)
		fake_sock_free(w[i].s, f[i]);
}

/* select: fd_set semantics over ring readiness. */
static void test_select(void **state)
{
	int f[2], a[2], c[2];
	struct ivs_sock *s = fake_sock_new(f);
	fd_set r, w, e;
	struct timeval tv = { 0, 0 };
	int nfds;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, a), 0);
	nfds = (a[1] > f[0] ? a[1] : f[0]) + 1;
	FD_ZERO(&r); FD_ZERO(&w); FD_ZERO(&e);
	FD_SET(f[0], &r);
	FD_SET(f[0], &w);
	FD_SET(f[0], &e);
	FD_SET(a[1], &w);
	/* ring neither readable nor writable; the plain fd is writable */
	assert_int_equal(select(nfds, &r, &w, &e, &tv), 1);
	assert_false(FD_ISSET(f[0], &r));
	assert_false(FD_ISSET(f[0], &w));
	assert_false(FD_ISSET(f[0], &e));
	assert_true(FD_ISSET(a[1], &w));
	/* readable ring, both read and write asked: counted per set */
	fake_set(s, POLLIN | POLLOUT);
	FD_ZERO(&r); FD_ZERO(&w);
	FD_SET(f[0], &r);
	FD_SET(f[0], &w);
	assert_int_equal(select(nfds, &r, &w, NULL, NULL), 2);
	assert_true(FD_ISSET(f[0], &r));
	assert_true(FD_ISSET(f[0], &w));
	/* sleep until readable, with a timeout that is written back */
	{
		struct later l = { .s = s, .ready = POLLIN, .ms = 10, .wfd = -1 };
		pthread_t t;

		fake_set(s, 0);
		FD_ZERO(&r);
		FD_SET(f[0], &r);
		tv = (struct timeval){ 10, 0 };
		t = later(&l);
		assert_int_equal(select(nfds, &r, NULL, NULL, &tv), 1);
		assert_true(FD_ISSET(f[0], &r));
		assert_true(tv.tv_sec < 10 || tv.tv_usec < 1000000);
		pthread_join(t, NULL);
	}
	/* a closed fd in the sets: EBADF */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, c), 0);
	close(c[0]);
	FD_ZERO(&r);
	FD_SET(f[0], &r);
	FD_SET(c[0], &r);
	nfds = (c[0] > nfds - 1 ? c[0] : nfds - 1) + 1;
	assert_int_equal(select(nfds, &r, NULL, NULL, NULL), -1);
	assert_int_equal(errno, EBADF);
	close(c[1]);
	/* pselect: timeout 0, nothing ready */
	fake_set(s, 0);
	FD_ZERO(&r);
	FD_SET(f[0], &r);
	assert_int_equal(pselect(f[0] + 1, &r, NULL, NULL, &(struct timespec){ 0, 0 }, NULL), 0);
	assert_false(FD_ISSET(f[0], &r));
	close(a[0]);
	close(a[1]);
	fake_sock_free(s, f);
}

/* An epoll fd holding an accelerated socket, inside a poll set (cascade). */
static void test_nested_epoll(void **state)
{
	int f[2];
	struct ivs_sock *s = fake_sock_new(f);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 5 };
	struct pollfd p = { .fd = ep, .events = POLLIN };
	struct later l = { .s = s, .ready = POLLIN, .ms = 20, .wfd = -1 };
	pthread_t t;

	(void)state;
	assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, f[0], &ev), 0);
	assert_int_equal(poll(&p, 1, 0), 0);
	t = later(&l);
	assert_int_equal(poll(&p, 1, -1), 1);
	assert_true(p.revents & POLLIN);
	assert_int_equal(epoll_wait(ep, &ev, 1, 0), 1);
	assert_int_equal(ev.data.u64, 5);
	pthread_join(t, NULL);
	ivs_mux_fd_closed(ep);
	close(ep);
	fake_sock_free(s, f);
}

/* A connector waiting for its acceptor: its kernel socket's data counts
 * (the core falls it back to TCP on the next poll). */
static void test_offered_fallback(void **state)
{
	int f[2];
	struct ivs_sock *s = fake_sock_new(f);
	struct pollfd p = { .fd = f[0], .events = POLLIN };
	struct later l = { .ms = 20, .wfd = f[1] };
	pthread_t t;

	(void)state;
	atomic_store(&s->kev, POLLIN | POLLRDHUP);
	t = later(&l);
	/* the fake falls back when the kernel fired: emulate by a watcher */
	for (;;) {
		int r = poll(&p, 1, 5);

		if (r == 1)
			break;
		assert_int_equal(r, 0);
		if (atomic_load(&s->plain) == 0) {
			struct pollfd k = { .fd = f[0], .events = POLLIN };

			if (ivs_real.poll(&k, 1, 0) == 1)
				atomic_store(&s->plain, 1);
		}
	}
	assert_int_equal(p.revents, POLLIN);
	pthread_join(t, NULL);
	fake_sock_free(s, f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_plain_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_acc_ring_not_kernel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mixed_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sleep_wake, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eintr, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nval, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many, setup, teardown),
		cmocka_unit_test_setup_teardown(test_threads_no_lost_wakeup, setup, teardown),
		cmocka_unit_test_setup_teardown(test_select, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nested_epoll, setup, teardown),
		cmocka_unit_test_setup_teardown(test_offered_fallback, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
