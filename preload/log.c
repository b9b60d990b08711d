// SPDX-License-Identifier: MIT
/* Configuration from the environment, logging (IVSOCK_LOG, IVSOCK_LOG_FILE)
 * and the counters printed at exit with IVSOCK_STATS=1. */
#include <errno.h>
#include <signal.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "sock_int.h"

struct ivs_config ivs_cfg = { .spin_ns = 50000, .attach_ns = 1000000000ULL };
int ivs_log_level = IVS_LOG_WARN;
/* The shim's own copy of stderr (or of IVSOCK_LOG_FILE), high and guarded
 * (sock_fdguard.c): the program closing or reusing fd 2 or any other number
 * never sends our lines into its files or sockets. */
static int log_fd = -1;
static bool log_is_stderr;       /* log_fd is our copy of fd 2 */
static dev_t stderr_dev;
static ino_t stderr_ino;
static _Atomic uint64_t counters[IVS_C_MAX];

static const char *const counter_names[IVS_C_MAX] = {
	[IVS_C_ACCEL_CONNECT] = "accelerated_connect",
	[IVS_C_ACCEL_ACCEPT] = "accelerated_accept",
	[IVS_C_LISTEN_REG] = "listeners_registered",
	[IVS_C_FB_NOT_TCP] = "fallback_not_tcp",
	[IVS_C_FB_NO_AGENT] = "fallback_no_agent",
	[IVS_C_FB_NOT_VM] = "fallback_not_vm",
	[IVS_C_FB_NO_LISTENER] = "fallback_no_listener",
	[IVS_C_FB_BIND] = "fallback_bind",
	[IVS_C_FB_NO_RINGS] = "fallback_no_rings",
	[IVS_C_FB_OFFER] = "fallback_offer",
	[IVS_C_FB_CONNECT] = "fallback_connect_failed",
	[IVS_C_FB_NO_OFFER] = "fallback_accept_no_offer",
	[IVS_C_FB_ACCEPT] = "fallback_accept_failed",
	[IVS_C_FB_PEER_TCP] = "fallback_peer_spoke_tcp",
	[IVS_C_FB_TIMEOUT] = "fallback_attach_timeout",
	[IVS_C_FB_FDMAX] = "fallback_fd_too_large",
	[IVS_C_FB_ABANDONED] = "fallback_acceptor_abandoned",
	[IVS_C_FB_PEER_CLOSED] = "fallback_peer_closed",
	[IVS_C_FB_CLOSED] = "fallback_closed_before_attach",
	[IVS_C_FB_VANISHED] = "fallback_channel_vanished",
	[IVS_C_RESET_REVOKED] = "reset_revoked",
	[IVS_C_SWITCH_TX_TCP] = "switch_tx_tcp",
	[IVS_C_SWITCH_RX_TCP] = "switch_rx_tcp",
	[IVS_C_DEMOTED] = "demoted",
	[IVS_C_SWITCH_STALL] = "switch_stalled",
	[IVS_C_SWITCH_OPERATOR] = "switch_operator",
	[IVS_C_SWITCH_PEER] = "switch_peer",
	[IVS_C_SWITCH_RESIZE] = "switch_resize",
	[IVS_C_SWITCH_RECLAIM] = "switch_reclaim",
	[IVS_C_RING_GROW] = "ring_grow",
	[IVS_C_PROMOTED] = "promoted",
	[IVS_C_PROMO_ASKED] = "promote_asked",
	[IVS_C_PROMO_UNTAKEN] = "promote_untaken",
	[IVS_C_PROMO_OPERATOR] = "promote_operator",
	[IVS_C_SWITCH_TX_RING] = "switch_tx_ring",
	[IVS_C_SWITCH_RX_RING] = "switch_rx_ring",
	[IVS_C_RESET_PEER_GONE] = "reset_peer_gone",
	[IVS_C_TX_BYTES] = "ring_tx_bytes",
	[IVS_C_RX_BYTES] = "ring_rx_bytes",
	[IVS_C_FALLBACK_BYTES] = "taken_back_bytes",
	[IVS_C_WAKES_SENT] = "doorbells_rung",
	[IVS_C_SLEEPS] = "sleeps",
	[IVS_C_AGENT_UNTRUSTED] = "agent_untrusted",
	[IVS_C_AGENT_TIMEOUT] = "agent_timeout",
	[IVS_C_AGENT_BAD_FD] = "agent_bad_fd",
};

static uint64_t env_u64(const char *name, uint64_t def)
{
	const char *s = getenv(name);
	char *end;
	unsigned long long v;

	if (!s || !*s)
		return def;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		return def;
	return v;
}

static bool env_true(const char *name)
{
	const char *s = getenv(name);

	return s && *s && strcmp(s, "0") != 0 && strcasecmp(s, "no") != 0;
}

/* Our copy of stderr, unless stderr is an inet socket (inetd-style: that
 * is the program's connection, not a log). */
static int stderr_copy(void)
{
	struct stat st;
	int dom = 0;
	socklen_t l = sizeof(dom);

	if (fstat(2, &st) < 0)
		return -1;
	stderr_dev = st.st_dev;
	stderr_ino = st.st_ino;
	if (S_ISSOCK(st.st_mode) && ivs_rc.getsockopt &&
	    ivs_rc.getsockopt(2, SOL_SOCKET, SO_DOMAIN, &dom, &l) == 0 &&
	    (dom == AF_INET || dom == AF_INET6))
		return -1;
	return ivs_rc.fcntl(2, F_DUPFD_CLOEXEC, 3);
}

/* One line to our log fd, if it still is ours; never SIGPIPE the program. */
static void log_write(const char *buf, size_t n)
{
	sigset_t pipe_set, old, pend;
	int fd = log_fd, had_pipe;
	ssize_t w;

	if (fd < 0 || !ivs_rc.write)
		return;
	if (!ivs_fdguard_verify(fd)) {
		log_fd = -1;
		return;
	}
	if (log_is_stderr) {
		/* Only while the program keeps the stderr it started with: once
		 * it closed or redirected fd 2 (a daemon, close_stdout() at
		 * exit), we stay quiet as writing to its fd 2 would. */
		struct stat st;

		if (fstat(2, &st) < 0 || st.st_dev != stderr_dev || st.st_ino != stderr_ino)
			return;
	}
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	sigpending(&pend);
	had_pipe = sigismember(&pend, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
	w = ivs_rc.write(fd, buf, n);
	if (w < 0 && errno == EPIPE && !had_pipe) {
		struct timespec zero = { 0, 0 };

		sigtimedwait(&pipe_set, NULL, &zero);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static void print_stats(void)
{
	char buf[2048];
	size_t n = 0;
	int i;

	n += (size_t)snprintf(buf + n, sizeof(buf) - n, "ivsock[%d] stats:", (int)getpid());
	for (i = 0; i < IVS_C_MAX && n < sizeof(buf); i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, " %s=%llu", counter_names[i],
				      (unsigned long long)atomic_load(&counters[i]));
	if (n >= sizeof(buf) - 1)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	log_write(buf, n);
}

/* Counters are also flushed from our destructor (exit), not from _exit. */
__attribute__((destructor)) static void shim_fini(void)
{
	if (ivs_cfg.stats)
		print_stats();
}

void ivs_config_load(void)
{
	const char *lv = getenv("IVSOCK_LOG");
	const char *file = getenv("IVSOCK_LOG_FILE");

	if (lv) {
		if (!strcasecmp(lv, "error"))
			ivs_log_level = IVS_LOG_ERROR;
		else if (!strcasecmp(lv, "warn"))
			ivs_log_level = IVS_LOG_WARN;
		else if (!strcasecmp(lv, "info"))
			ivs_log_level = IVS_LOG_INFO;
		else if (!strcasecmp(lv, "debug"))
			ivs_log_level = IVS_LOG_DEBUG;
	}
	if (file && *file) {
		int fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);

		if (fd >= 0)
			log_fd = fd;
	}
	if (log_fd < 0) {
		log_fd = stderr_copy();
		log_is_stderr = log_fd >= 0;
	}
	if (log_fd >= 0) {
		ivs_fdguard_take(log_fd, &log_fd);
		ivs_fdguard_ident(log_fd);
	}
	ivs_cfg.disabled = env_true("IVSOCK_DISABLE");
	ivs_cfg.stats = env_true("IVSOCK_STATS");
	ivs_cfg.spin_ns = env_u64("IVSOCK_SPIN_US", 50);
	if (ivs_cfg.spin_ns > 1000000) /* 1 s at most */
		ivs_cfg.spin_ns = 1000000;
	ivs_cfg.spin_ns *= 1000;
	ivs_cfg.attach_ns = env_u64("IVSOCK_ATTACH_MS", 1000) * 1000000ULL;
	ivs_cfg.attach_max_ns = env_u64("IVSOCK_ATTACH_MAX_MS", 10000) * 1000000ULL;
	if (ivs_cfg.attach_max_ns < ivs_cfg.attach_ns)
		ivs_cfg.attach_max_ns = ivs_cfg.attach_ns;
	ivs_cfg.agent = getenv("IVSOCK_AGENT");
	/* the ring size this program's connections ask for (the agent gives
	 * the smallest class at least that big); 0: the domain's default */
	ivs_cfg.ring_size = env_u64("IVSOCK_RING_SIZE", 0);
	if (ivs_cfg.ring_size > (1U << 30))
		ivs_cfg.ring_size = 1U << 30;
	/* heavy flows move to the next larger ring class (sock_promote.c) */
	ivs_cfg.ring_grow = env_true("IVSOCK_RING_GROW");
}

void ivs_log(int level, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	char buf[512];
	va_list ap;
	int n;

	if (level > ivs_log_level || level < 0 || level > IVS_LOG_DEBUG)
		return;
	n = snprintf(buf, sizeof(buf), "ivsock[%d] %s: ", (int)getpid(), names[level]);
	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	log_write(buf, (size_t)n);
}

void ivs_count(enum ivs_counter c, uint64_t n)
{
	atomic_fetch_add_explicit(&counters[c], n, memory_order_relaxed);
}

void ivs_fallback(enum ivs_counter c, int fd, const char *why, int err)
{
	ivs_count(c, 1);
	ivs_debug("fd %d stays on TCP: %s%s%s", fd, why, err ? ": " : "",
		  err ? strerror(-err) : "");
}

uint64_t ivs_spin_ns(void)
{
	return ivs_cfg.spin_ns;
}

uint64_t ivs_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}
