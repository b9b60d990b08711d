/* SPDX-License-Identifier: MIT */
/*
 * Internal interface between the parts of libivsock.so: the socket core
 * (fd table, connect/accept/listen, data path: sock_*.c) and the readiness
 * multiplexers (poll/select/epoll: mux_*.c). Nothing here is exported from
 * the .so (see libivsock.map).
 */
#ifndef IVS_SHIM_H
#define IVS_SHIM_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <signal.h>
#include <time.h>

/* ---- libc entry points, resolved lazily and thread-safely (real.c) ---- */
struct ivs_real {
	int (*socket)(int, int, int);
	int (*close)(int);
	int (*poll)(struct pollfd *, nfds_t, int);
	int (*ppoll)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);
	int (*select)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
	int (*pselect)(int, fd_set *, fd_set *, fd_set *, const struct timespec *,
		       const sigset_t *);
	int (*epoll_create)(int);
	int (*epoll_create1)(int);
	int (*epoll_ctl)(int, int, int, struct epoll_event *);
	int (*epoll_wait)(int, struct epoll_event *, int, int);
	int (*epoll_pwait)(int, struct epoll_event *, int, int, const sigset_t *);
	int (*epoll_pwait2)(int, struct epoll_event *, int, const struct timespec *,
			    const sigset_t *);
	/* the socket core keeps the rest in its private struct ivs_real_core */
};
extern struct ivs_real ivs_real;
/* Resolve every ivs_real pointer (idempotent, thread-safe). */
void ivs_real_init(void);

/* ---- accelerated sockets (socket core) ---- */

struct ivs_sock; /* one per accelerated connection; shared by dup'd fds */

/*
 * The accelerated socket behind fd, with a reference taken, or NULL when fd
 * is a plain fd (the common case: one table lookup, no lock, no syscall).
 */
struct ivs_sock *ivs_sock_get(int fd);
void ivs_sock_put(struct ivs_sock *s);

/*
 * Readiness of s now, from ring and channel state only (no syscall):
 * POLLIN (bytes readable or EOF), POLLOUT (ring space), POLLRDHUP (peer shut
 * down writing), POLLHUP (both directions done / peer gone), POLLERR
 * (reset: SO_ERROR pending). Only bits in `events` (plus HUP/ERR, which are
 * always reported) are returned.
 */
unsigned ivs_sock_poll(struct ivs_sock *s, unsigned events);

/*
 * About to sleep waiting for `events` on s: arm the ring sleep/wake flags
 * (DESIGN §5) so that the peer rings our doorbell on the next change.
 * @return the readiness that appeared meanwhile (non-zero: do not sleep).
 */
unsigned ivs_sock_arm(struct ivs_sock *s, unsigned events);
/* The same without looking at the kernel socket's liveness (one poll
 * syscall): for a caller whose kernel registration of the fd watches it
 * and who calls ivs_sock_arm() once after that registration fired. */
unsigned ivs_sock_arm_quiet(struct ivs_sock *s, unsigned events);
/* Is s a connector still waiting for its acceptor (it may fall back to
 * TCP: its kernel socket and its attach deadline matter)? */
bool ivs_sock_may_fall_back(struct ivs_sock *s);

/*
 * Edge-trigger support: a counter that changes whenever the readiness of s
 * may have changed (data arrived, space freed, EOF/reset). mux_epoll reports
 * an EPOLLET event again only when the counter moved since the last report.
 */
uint64_t ivs_sock_event_seq(struct ivs_sock *s);

/*
 * Events the multiplexer must ALSO wait for on the fd itself (the kernel
 * socket), or 0 when ring readiness is enough. Non-zero (POLLIN|POLLRDHUP)
 * while a connector waits for its peer to attach: if the kernel socket turns
 * readable (a server that is not shimmed spoke first, refused, hung up), the
 * next ivs_sock_poll() falls the socket back to TCP. Call ivs_sock_poll()
 * again after the kernel fd fired, and re-evaluate at least every 100 ms
 * while this is non-zero (an unanswered offer falls back after a timeout).
 * Once ivs_sock_get(fd) returns NULL the fd is plain again.
 */
unsigned ivs_sock_kernel_events(struct ivs_sock *s);

/*
 * Directions of s whose readiness is the kernel socket's now (a path switch
 * moved them to TCP, or s became plain during the call): POLLIN, POLLOUT.
 * A multiplexer adds those of them the program waits for to its sleep set.
 */
unsigned ivs_sock_kernel_io(struct ivs_sock *s);

/*
 * A plain TCP socket that may still move to a ring (both ends run the shim:
 * docs/switch.md, "TCP -> ring") must not be waited on in the kernel
 * without the promotion knowing: a multiplexer that puts fd in its kernel
 * wait calls ivs_sock_kernel_enter() first and ivs_sock_kernel_leave() with
 * its result after the wait. NULL: nothing to leave; *again: fd is
 * accelerated now (ivs_sock_get() it). ivs_sock_promotable(): is fd such a
 * socket (a hint, to choose the slow path).
 */
struct ivs_sock *ivs_sock_kernel_enter(int fd, bool *again);
void ivs_sock_kernel_leave(struct ivs_sock *tcp);
bool ivs_sock_promotable(int fd);

/*
 * The eventfd every ring wake-up of this process arrives on (our doorbell
 * vector), or -1 if the process has no agent connection. Add it to the set
 * you sleep on; after waking, call ivs_wake_drain() and re-check readiness.
 */
int ivs_wake_fd(void);
void ivs_wake_drain(void);

/* Spin budget before sleeping, from IVSOCK_SPIN_US (default 50 us). */
uint64_t ivs_spin_ns(void);
/* Signal handlers run so far in this thread (the interposed sigaction keeps
 * count): a wait that spun through a handler must return EINTR, as the
 * kernel's poll/select/epoll_wait would. */
unsigned ivs_sig_count(void);
uint64_t ivs_now_ns(void);

/*
 * Sleepers on the process wake fd (socket core). A thread about to sleep on
 * ivs_wake_fd() registers an eventfd of its own first (before its last
 * readiness check) and sleeps on both; whoever drains the process wake fd
 * (ivs_wake_drain(), the core's own sleepers) signals every registered
 * eventfd, so a wake-up drained by one thread is never lost to another.
 * The multiplexers reference these weakly until the core provides them.
 */
void ivs_wake_sleeper_add(int efd);
void ivs_wake_sleeper_del(int efd);

/* Number of fds of this process that refer to s (dup counts): an epoll
 * registration lives as long as the open file, not the fd number. */
int ivs_sock_nfds(struct ivs_sock *s);

/* ---- hooks from the socket core into the multiplexers ---- */

/* fd is being closed (or replaced by dup2/dup3): forget it in every epoll
 * set and internal table (called by the socket core's close/dup2). */
void ivs_mux_fd_closed(int fd);

/* Make what this thread needs to sleep (its eventfd) now, before the
 * program can sandbox itself (called by the core after fork/exec). */
void ivs_mux_prepare(void);

/* fd just became accelerated (accept/connect attached a channel), so epoll
 * sets that already hold fd must start watching its ring readiness. */
void ivs_mux_fd_accelerated(int fd);

/* fd fell back to plain TCP after having been accelerated (a connector whose
 * acceptor never attached): epoll sets holding fd return to the kernel's
 * answer for it. Call after ivs_sock_get(fd) starts returning NULL. */
void ivs_mux_fd_plain(int fd);

/* fd (plain until now) was promoted to a channel: as ivs_mux_fd_accelerated,
 * and a thread asleep in the kernel's epoll_wait on such a set is woken
 * (its wait must go on in the multiplexer, with the wake fd). */
void ivs_mux_fd_promoted(int fd);

/* ---- logging (IVSOCK_LOG=error|warn|info|debug) ---- */
enum { IVS_LOG_ERROR, IVS_LOG_WARN, IVS_LOG_INFO, IVS_LOG_DEBUG };
extern int ivs_log_level;
void ivs_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define ivs_debug(...) do { if (ivs_log_level >= IVS_LOG_DEBUG) ivs_log(IVS_LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
