// SPDX-License-Identifier: MIT
/*
 * How the multiplexers sleep on ring wake-ups: the process wake fd plus an
 * eventfd of the calling thread, registered with the socket core as a
 * sleeper so that a wake-up drained by another thread is passed on.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>
#include <sys/eventfd.h>

#include "ivsock/doorbell.h"
#include "mux.h"

/* Provided by the socket core; weak until it does (see shim.h). */
extern void ivs_wake_sleeper_add(int efd) __attribute__((weak));
extern void ivs_wake_sleeper_del(int efd) __attribute__((weak));
/* The shim's own fds may move (sock_fdguard.c; weak for the unit tests). */
extern int ivs_fdguard_fd(int fd) __attribute__((weak));
extern int ivs_fdguard_close(int fd) __attribute__((weak));

static int efd_now(int fd)
{
	return ivs_fdguard_fd ? ivs_fdguard_fd(fd) : fd;
}

static void efd_close(int fd)
{
	if (ivs_fdguard_close)
		ivs_fdguard_close(fd);
	else
		ivs_real.close(fd);
}

struct tl_wake {
	int efd;      /* the thread's eventfd, -1 when none */
	unsigned gen; /* fork generation it was made in */
};

static _Thread_local struct tl_wake tl_w = { -1, 0 };
static atomic_uint fork_gen;
static pthread_key_t w_key;
static pthread_once_t w_once = PTHREAD_ONCE_INIT;

static void w_destroy(void *p)
{
	struct tl_wake *w = p;

	if (w && w->efd >= 0) {
		efd_close(w->efd);
		w->efd = -1;
	}
}

static void w_atfork_child(void)
{
	atomic_fetch_add_explicit(&fork_gen, 1, memory_order_relaxed);
}

static void w_init_once(void)
{
	pthread_key_create(&w_key, w_destroy);
	pthread_atfork(NULL, NULL, w_atfork_child);
}

/* The thread's eventfd (made once per thread and per fork), or -1. */
static int thread_efd(void)
{
	unsigned gen = atomic_load_explicit(&fork_gen, memory_order_relaxed);

	if (tl_w.efd >= 0 && tl_w.gen == gen) {
		/* the shim's fds move when the program dup2()s onto them */
		tl_w.efd = efd_now(tl_w.efd);
		if (tl_w.efd >= 0)
			return tl_w.efd;
	}
	pthread_once(&w_once, w_init_once);
	if (tl_w.efd >= 0 && tl_w.gen != gen) {
		/* inherited across fork: it is ours to close in this process */
		efd_close(tl_w.efd);
		tl_w.efd = -1;
	}
	tl_w.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (tl_w.efd < 0) {
		ivs_log(IVS_LOG_WARN, "mux: eventfd: %d", errno);
		return -1;
	}
	tl_w.gen = gen;
	pthread_setspecific(w_key, &tl_w);
	return tl_w.efd;
}

/* Make the calling thread's eventfd now (fork child, exec'd image: before
 * the program can forbid eventfd() with a sandbox). */
void ivs_mux_prepare(void)
{
	(void)thread_efd();
}

int mux_sleep_begin(struct pollfd *p)
{
	int wfd = ivs_wake_fd();
	int n = 0, efd;

	if (wfd < 0)
		return 0;
	p[n++] = (struct pollfd){ .fd = wfd, .events = POLLIN };
	if (ivs_wake_sleeper_add && (efd = thread_efd()) >= 0) {
		ivs_wake_sleeper_add(efd);
		p[n++] = (struct pollfd){ .fd = efd, .events = POLLIN };
	}
	return n;
}

void mux_sleep_end(const struct pollfd *p, int n)
{
	if (n > 1) {
		ivs_wake_sleeper_del(p[1].fd);
		if (p[1].revents)
			ivsock_eventfd_drain(p[1].fd);
	}
	/* Drain the process fd and pass the wake-up on to the other sleepers. */
	if (n > 0 && p[0].revents)
		ivs_wake_drain();
}
