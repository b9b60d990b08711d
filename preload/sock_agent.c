// SPDX-License-Identifier: MIT
/* The process's connection to ivsock-agent (HELLO on first need, again in a
 * forked child), doorbells to peers, and sleeping on wake-ups: every thread
 * that blocks polls the process's wake eventfd plus an eventfd of its own,
 * and whoever drains the process fd passes the wake-up on to the others. */
#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>

#include "sock_int.h"

_Atomic unsigned ivs_fork_gen;

static pthread_mutex_t agent_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ivs_agent *_Atomic g_agent;
static unsigned g_agent_gen;
static struct ivs_agent *g_stale;     /* parent's agent, seen in a child */
static uint64_t g_fail_ns;            /* end of the last failed attempt */
static uint64_t g_retry_ns;           /* wait this long after it */
static int g_fail_rc;

#define RETRY_NS       1000000000ULL   /* no agent (yet): try again after 1 s */
#define RETRY_SLOW_NS 10000000000ULL   /* untrusted, silent or bad agent: 10 s */

static struct ivs_agent *agent_connect(void)
{
	struct ivs_agent *ag = calloc(1, sizeof(*ag));
	struct ivsock_agent_opts o;
	int rc, fl;

	if (!ag)
		return NULL;
	if (ivsock_agent_opts_from_env(&o) < 0)
		ivs_log(IVS_LOG_WARN, "IVSOCK_AGENT_UID or IVSOCK_AGENT_TIMEOUT_MS malformed: "
			"ignored");
	/* Every step has a deadline (o.timeout_ms): we hold agent_lock. */
	rc = ivsock_agent_connect_opts(ivs_cfg.agent, &o, &ag->conn);
	if (rc < 0) {
		const char *where = ivs_cfg.agent ? ivs_cfg.agent : "@ivsock-agent";

		g_retry_ns = RETRY_NS;
		if (rc == -EPERM) {
			/* Not root, not IVSOCK_AGENT_UID: a squatter on the
			 * name. Nothing was sent to it. */
			ivs_count(IVS_C_AGENT_UNTRUSTED, 1);
			g_retry_ns = RETRY_SLOW_NS;
		} else if (rc == -ETIMEDOUT) {
			ivs_count(IVS_C_AGENT_TIMEOUT, 1);
			g_retry_ns = RETRY_SLOW_NS;
		} else if (rc == -EBADFD) {
			ivs_count(IVS_C_AGENT_BAD_FD, 1);
			g_retry_ns = RETRY_SLOW_NS;
		}
		if (rc != g_fail_rc)
			ivs_debug("no agent at %s: %s", where,
				  rc == -EPERM ? "listener is not a trusted uid (root or "
						 "IVSOCK_AGENT_UID)" :
				  rc == -EBADFD ? "it handed over an fd that failed its check" :
				  rc == -ETIMEDOUT ? "no answer in time (IVSOCK_AGENT_TIMEOUT_MS)" :
				  strerror(-rc));
		g_fail_rc = rc;
		free(ag);
		return NULL;
	}
	ag->rg = &ag->conn.region;
	ag->me.vm = (uint8_t)ag->conn.info.vm_index;
	ag->me.client = (uint16_t)ag->conn.info.client_id;
	ag->me.peer_id = ag->conn.info.peer_id;
	ag->me.vector = ag->conn.info.vector;
	ag->wake_fd = ivsock_doorbell_wait_fd(ag->conn.db);
	/* the fds are the shim's own (sock_fdguard.c): numbers that move */
	ivs_fdguard_ref(ag->conn.sock, &ag->conn.sock);
	ivs_fdguard_ref(ag->wake_fd, &ag->wake_fd);
	if (ag->conn.db)
		ivs_fdguard_ref(ag->conn.db->wait_fd, &ag->conn.db->wait_fd);
	fl = ivs_rc.fcntl(ag->wake_fd, F_GETFL);
	if (fl >= 0)
		ivs_rc.fcntl(ag->wake_fd, F_SETFL, fl | O_NONBLOCK);
	ivs_log(IVS_LOG_INFO, "agent: vm %u client %u peer %u vector %u",
		ag->me.vm, ag->me.client, ag->me.peer_id, ag->me.vector);
	return ag;
}

struct ivs_agent *ivs_agent_get(void)
{
	struct ivs_agent *ag = atomic_load_explicit(&g_agent, memory_order_acquire);
	unsigned gen = atomic_load_explicit(&ivs_fork_gen, memory_order_relaxed);
	uint64_t now;

	if (__builtin_expect(ag && g_agent_gen == gen, 1))
		return ag;
	pthread_mutex_lock(&agent_lock);
	ag = atomic_load(&g_agent);
	if (ag && g_agent_gen != gen) {
		/* Forked child: drop the parent's doorbell fds, keep its socket
		 * (see atfork_child) and its mapping (our rings point into it). */
		if (ag->conn.db) {
			ivsock_doorbell_free(ag->conn.db);
			ag->conn.db = NULL;
		}
		g_stale = ag;
		atomic_store(&g_agent, NULL);
		ag = NULL;
		g_fail_ns = 0;
	}
	if (!ag) {
		now = ivs_now_ns();
		if (!g_fail_ns || now - g_fail_ns > g_retry_ns) {
			ag = agent_connect();
			if (ag) {
				g_agent_gen = gen;
				atomic_store_explicit(&g_agent, ag, memory_order_release);
				g_fail_ns = 0;
			} else {
				/* from the end of the attempt: a slow failure
				 * must not make every caller wait for it */
				now = ivs_now_ns();
				g_fail_ns = now ? now : 1;
			}
		}
	}
	pthread_mutex_unlock(&agent_lock);
	return ag;
}

/* 0: this process's agent, 1: the parent's (forked child), or NULL. */
struct ivs_agent *ivs_agent_peek(int which)
{
	return which == 0 ? atomic_load(&g_agent) : g_stale;
}

void ivs_ring_peer(struct ivs_sock *s)
{
	struct ivs_agent *ag = s->ag;
	uint32_t peer, vec;

	if (!ag || !s->v.peer_ctl)
		return;
	/* Read afresh each time from the other end's ctl page: a forked
	 * holder may have re-pointed its end (validated, <= 65535). */
	if (ivsock_chan_peer_doorbell(NULL, &s->v, &peer, &vec) < 0)
		return;
	ivs_count(IVS_C_WAKES_SENT, 1);
	if (s->winfd >= 0)
		ivsock_window_ring(s->winfd, vec); /* the kernel rings only that VM */
	else if (ag->conn.db)
		ivsock_doorbell_notify(ag->conn.db, peer, vec);
}

/* ---- sleeping ---- */

#define MAX_SLEEPERS 256
static pthread_mutex_t sleep_lock = PTHREAD_MUTEX_INITIALIZER;
static int sleepers[MAX_SLEEPERS];
static int nsleepers;
static __thread int tl_efd = -1;
static __thread unsigned tl_efd_gen;
static pthread_key_t tl_key;
static pthread_once_t tl_once = PTHREAD_ONCE_INIT;

/* A thread's own eventfd is closed when the thread exits. */
static void tl_destroy(void *p)
{
	int fd = (int)(intptr_t)p - 1;

	if (fd >= 0 && fd == tl_efd) {
		ivs_fdguard_close(fd);
		tl_efd = -1;
	}
}

static void tl_key_init(void)
{
	pthread_key_create(&tl_key, tl_destroy);
}

/* This thread's eventfd, made once per thread and fork generation (before
 * a sandbox can forbid eventfd(): the constructor and fork() make the
 * calling thread's); the number may have moved (sock_fdguard.c). */
static void tl_efd_ensure(unsigned gen)
{
	if (tl_efd >= 0 && tl_efd_gen == gen) {
		int now = ivs_fdguard_fd(tl_efd);

		if (now == tl_efd)
			return;
		tl_efd = now;
		pthread_setspecific(tl_key, (void *)(intptr_t)(tl_efd + 1));
		if (now >= 0)
			return;
	}
	tl_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	tl_efd_gen = gen;
	pthread_once(&tl_once, tl_key_init);
	pthread_setspecific(tl_key, (void *)(intptr_t)(tl_efd + 1));
}

static void broadcast(int except)
{
	pthread_mutex_lock(&sleep_lock);
	for (int i = 0; i < nsleepers; i++)
		if (sleepers[i] != except)
			ivsock_eventfd_signal(sleepers[i]);
	pthread_mutex_unlock(&sleep_lock);
}

void ivs_wake_sleeper_add(int efd)
{
	pthread_mutex_lock(&sleep_lock);
	if (nsleepers < MAX_SLEEPERS)
		sleepers[nsleepers++] = efd;
	pthread_mutex_unlock(&sleep_lock);
}

void ivs_wake_sleeper_del(int efd)
{
	pthread_mutex_lock(&sleep_lock);
	for (int i = 0; i < nsleepers; i++)
		if (sleepers[i] == efd) {
			sleepers[i] = sleepers[--nsleepers];
			break;
		}
	pthread_mutex_unlock(&sleep_lock);
}

int ivs_sleep(int fd, short kev, int timeout_ms, short *revents)
{
	struct ivs_agent *ag = ivs_agent_get();
	struct pollfd p[3];
	int n = 0, rc, kidx = -1, widx = -1, tidx = -1;
	unsigned gen = atomic_load(&ivs_fork_gen);

	*revents = 0;
	tl_efd_ensure(gen);
	if (ag && ag->conn.db) {
		widx = n;
		p[n++] = (struct pollfd){ .fd = ag->wake_fd, .events = POLLIN };
	}
	if (tl_efd >= 0) {
		tidx = n;
		p[n++] = (struct pollfd){ .fd = tl_efd, .events = POLLIN };
		ivs_wake_sleeper_add(tl_efd);
	}
	if (fd >= 0) {
		kidx = n;
		p[n++] = (struct pollfd){ .fd = fd, .events = kev };
	}
	ivs_count(IVS_C_SLEEPS, 1);
	rc = ivs_real.poll(p, (nfds_t)n, timeout_ms);
	if (tidx >= 0)
		ivs_wake_sleeper_del(tl_efd);
	if (rc < 0)
		return -errno;
	if (tidx >= 0 && p[tidx].revents)
		ivsock_eventfd_drain(tl_efd);
	if (widx >= 0 && p[widx].revents && ivsock_eventfd_drain(ag->wake_fd) > 0)
		broadcast(tl_efd);
	if (kidx >= 0)
		*revents = p[kidx].revents;
	return 0;
}

int ivs_wake_fd(void)
{
	struct ivs_agent *ag = atomic_load(&g_agent);

	if (!ag || g_agent_gen != atomic_load(&ivs_fork_gen) || !ag->conn.db)
		return -1;
	return ag->wake_fd;
}

void ivs_wake_drain(void)
{
	int fd = ivs_wake_fd();

	if (fd >= 0 && ivsock_eventfd_drain(fd) > 0)
		broadcast(-1);
}

/* ---- fork ---- */

static void child_sock(int fd, struct ivs_sock *s, void *arg)
{
	(void)fd;
	(void)arg;
	pthread_mutex_init(&s->rx_lock, NULL);
	pthread_mutex_init(&s->tx_lock, NULL);
	if (s->kind == IVS_LISTENER)
		s->lshared = true;
	s->rx_pending = s->tx_pending = 0;
}

/* fork(): the child will hold every accelerated end we hold. The count is
 * raised before the child exists, so the parent closing its fd right after
 * fork (accept-then-fork) never drops the end under the child. */
static unsigned fork_seq;
struct fork_walk { unsigned seq; int delta; int nsocks; };

static void hold_sock(int fd, struct ivs_sock *s, void *arg)
{
	struct fork_walk *w = arg;

	(void)fd;
	w->nsocks++;
	/* two processes will hold it: a TCP socket is never promoted then
	 * (sock_promote.c) */
	if (s->kind == IVS_CONN && atomic_load(&s->state) == IVS_ST_PLAIN)
		s->promo_ok = false;
	if (s->kind != IVS_CONN || s->held_gen == w->seq || atomic_load(&s->closed) ||
	    atomic_load(&s->state) == IVS_ST_PLAIN || !s->ag)
		return;
	s->held_gen = w->seq;
	s->shared = true;
	atomic_fetch_add(&s->v.my_ctl->holders, w->delta);
}

IVS_EXPORT pid_t fork(void)
{
	static pthread_mutex_t fork_lock = PTHREAD_MUTEX_INITIALIZER;
	struct fork_walk w;
	pid_t pid;
	int err;

	ivs_init();
	pthread_mutex_lock(&fork_lock);
	w.seq = ++fork_seq | 0x80000000U; /* never a fork generation */
	w.delta = 1;
	w.nsocks = 0;
	ivs_fd_foreach(hold_sock, &w);
	pthread_mutex_unlock(&fork_lock);
	pid = ivs_rc.fork();
	if (pid == 0 && w.nsocks && !ivs_cfg.disabled) {
		/* A child holding accelerated sockets gets its agent connection
		 * and doorbells now, while it still has the parent's privileges
		 * and no sandbox (setuid()/seccomp come after fork returns). */
		err = errno;
		ivs_agent_prepare();
		errno = err;
	}
	if (pid < 0) {
		err = errno;
		pthread_mutex_lock(&fork_lock);
		w.seq = ++fork_seq | 0x80000000U;
		w.delta = -1;
		ivs_fd_foreach(hold_sock, &w);
		pthread_mutex_unlock(&fork_lock);
		errno = err;
	}
	return pid;
}

static void atfork_parent(void)
{
}

static void mark_shared(int fd, struct ivs_sock *s, void *arg)
{
	(void)fd;
	(void)arg;
	if (s->kind == IVS_LISTENER)
		s->lshared = true;
}

static void atfork_prepare(void)
{
	ivs_fd_foreach(mark_shared, NULL);
}

static void atfork_child(void)
{
	atomic_fetch_add(&ivs_fork_gen, 1);
	/* Locks another thread may have held at fork. */
	pthread_mutex_init(&agent_lock, NULL);
	pthread_mutex_init(&sleep_lock, NULL);
	nsleepers = 0;
	ivs_table_atfork_child();
	/* The parent's agent socket stays open in the child (until exec, it is
	 * close-on-exec): the agent keeps a client while any process holds its
	 * socket, so ends owned by the parent are not reset when the parent
	 * exits first. The child says HELLO itself on first use. */
	ivs_fd_foreach(child_sock, NULL);
}

static void ring_sock(int fd, struct ivs_sock *s, void *arg)
{
	(void)fd;
	(void)arg;
	if (s->kind == IVS_CONN && atomic_load(&s->state) == IVS_ST_CONNECTED &&
	    !atomic_load(&s->closed))
		ivs_ring_peer(s); /* resolves the peer's doorbell (one spurious wake) */
}

void ivs_agent_prepare(void)
{
	struct ivs_agent *ag = ivs_agent_get();

	tl_efd_ensure(atomic_load(&ivs_fork_gen));
	if (ag)
		ivs_mux_prepare();
	if (ag)
		ivs_fd_foreach(ring_sock, ag);
}

__attribute__((constructor)) static void agent_init(void)
{
	ivs_init();
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
	/* Eagerly: as whoever started us (a server may drop privileges or
	 * sandbox itself before its first socket call); without an agent
	 * this costs one refused connect, retried lazily after 1 s. */
	if (!ivs_cfg.disabled)
		ivs_agent_get();
}

/*
 * exit() with accelerated sockets still open: release them as the kernel
 * closes the fds, so the peer gets its end of stream (or reset, with bytes
 * unread) and a doorbell at once, and a process sharing a socket (fork)
 * keeps a live channel instead of one the agent resets with our client.
 */
static void exit_sock(int fd, struct ivs_sock *s, void *arg)
{
	(void)arg;
	if (s->kind == IVS_CONN && !atomic_load(&s->closed) &&
	    atomic_load(&s->state) == IVS_ST_CONNECTED && ivs_fd_remove(fd) == s) {
		if (atomic_fetch_sub(&s->nfds, 1) == 1)
			ivs_conn_release(s, fd);
		ivs_sock_put(s);
	}
}

__attribute__((destructor)) static void agent_fini(void)
{
	ivs_fd_foreach(exit_sock, NULL);
}
