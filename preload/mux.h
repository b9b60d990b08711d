/* SPDX-License-Identifier: MIT */
/*
 * Private interface between the readiness multiplexers of libivsock.so:
 * time helpers, the per-thread wake set (mux_wake.c), and the hooks poll and
 * select use to treat an epoll fd holding accelerated sockets (cascade).
 */
#ifndef IVS_MUX_H
#define IVS_MUX_H

#include <stdbool.h>
#include <stdint.h>

#include "shim.h"

/* Readiness bits an accelerated socket can report (poll and epoll share the
 * numeric values on Linux; asserted in mux_epoll.c). */
#define MUX_POLL_BITS (POLLIN | POLLPRI | POLLOUT | POLLRDNORM | POLLWRNORM | \
		       POLLRDHUP | POLLERR | POLLHUP)

/* Largest timeout slice slept when the process has no wake fd (no agent
 * connection yet): ring readiness is then re-checked at least this often. */
#define MUX_NOWAKE_SLICE_NS 1000000ULL
/* ... and while a connector waits for its acceptor (it may fall back). */
#define MUX_OFFER_SLICE_NS 100000000ULL
/* ... and while an edge-triggered entry has every event it waits for ready
 * already (reported): the core arms nothing then, so a new edge (more data
 * on an undrained socket) is only seen by re-checking its event counter. */
#define MUX_EDGE_SLICE_NS 10000000ULL

/* Set by the arming functions of this thread when a sleep must be cut to
 * MUX_EDGE_SLICE_NS; reset by the caller before arming. */
extern _Thread_local bool mux_arm_slice;

/* Absolute deadline for a relative timeout in ns (< 0: none). UINT64_MAX
 * means "forever". */
static inline uint64_t mux_deadline(int64_t timeout_ns)
{
	if (timeout_ns < 0)
		return UINT64_MAX;
	return ivs_now_ns() + (uint64_t)timeout_ns;
}

/* Nanoseconds left until deadline (0 when passed; INT64_MAX: forever). */
static inline int64_t mux_remaining(uint64_t deadline)
{
	uint64_t now;

	if (deadline == UINT64_MAX)
		return INT64_MAX;
	now = ivs_now_ns();
	return now >= deadline ? 0 : (int64_t)(deadline - now);
}

/* Resolve the libc pointers on first use. */
static inline void mux_real(void)
{
	if (__builtin_expect(ivs_real.ppoll == NULL, 0))
		ivs_real_init();
}

/*
 * Sleeping on wake-ups (mux_wake.c). mux_sleep_begin() registers the calling
 * thread as a sleeper (so a wake-up drained by another thread is passed on to
 * it) and fills p[] with the fds to add to the sleep set: the process wake fd
 * and the thread's own eventfd. Call it BEFORE the last readiness check
 * (arming). mux_sleep_end() unregisters and consumes what p[].revents shows.
 * @return the number of pollfds filled (0: no wake fd; sleep in slices).
 */
#define MUX_SLEEP_FDS 2
int mux_sleep_begin(struct pollfd *p);
void mux_sleep_end(const struct pollfd *p, int n);

/* Exported interposers (the .so is built with hidden visibility). */
#define MUX_EXPORT __attribute__((visibility("default")))

/*
 * Cascade support (mux_epoll.c). fd is an epoll fd whose side table holds
 * accelerated entries: @return true, and when so mux_ep_peek() tells whether
 * a wait on it would report one of them now (without consuming an edge or a
 * one-shot), and mux_ep_arm() arms all of them before the caller sleeps
 * (@return non-zero if one became ready meanwhile).
 */
bool mux_ep_has_acc(int fd);
bool mux_ep_peek(int fd);
bool mux_ep_arm(int fd);

/* Engine behind poll/ppoll (mux_poll.c); timeout_ns < 0 is infinite. */
int mux_poll_wait(struct pollfd *fds, nfds_t nfds, int64_t timeout_ns,
		  const sigset_t *sigmask);

/*
 * Adaptive spin before sleeping, per thread, the rule of the socket read
 * path (docs/shim.md): a wait that ends while we still had the CPU doubles
 * the budget (up to IVSOCK_SPIN_US), one that had to yield or to sleep
 * halves it; a probe with the full budget every 64th wait, less often
 * (down to every 1024th) while probes lose. In the second half of the
 * budget the spinner yields its CPU, so that a peer sharing it can answer;
 * the wait counts as lost only if a yield did run another task (the
 * thread's involuntary context switches went up). A win raises the
 * budget to at least twice the wait it took.
 */
struct mux_spin {
	uint32_t budget; /* ns; UINT32_MAX: not set yet */
	uint32_t waits;
	uint32_t every;  /* probe when (waits & every) == 0; 2^k - 1 */
	bool probing;
};

uint64_t mspin_budget(struct mux_spin *st, uint64_t max);
void mspin_end(struct mux_spin *st, uint64_t max, bool won, uint64_t waited);
/* One pause of a spin of len ns ending at end; *csw: the involuntary
 * context switches seen when the yield half began (-1: not yet). */
void mspin_pause(uint64_t now, uint64_t end, uint64_t len, long *csw);
/* Did the spin win: data, and no other task ran on our CPU meanwhile? */
bool mspin_won(bool got, long csw);

#endif
