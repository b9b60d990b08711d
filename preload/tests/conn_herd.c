// SPDX-License-Identifier: MIT
/*
 * conn-herd: many concurrent TCP connections through one epoll loop, every
 * byte checked, for the shim's tests of its connection table, fd limits and
 * readiness under load: a herd of connections opened at once, held idle,
 * then all busy together.
 *
 *   conn-herd server [--bind ADDR] PORT
 *       Echo server: one thread, one epoll instance, connections
 *       edge-triggered. While a connection has echo bytes the peer has not
 *       taken yet, nothing more is read from it, so a slow reader is pushed
 *       back by TCP instead of growing our memory. When accept runs out of
 *       fds, the new connection is closed (a spare fd is given up for the
 *       moment) and this is said once; the others carry on. Default ADDR:
 *       "::" with IPv4 too. Runs until SIGTERM/SIGINT, then exits 0. On
 *       stderr: "herd-server: listening on PORT" (for PORT 0 the one
 *       bound) and at exit "herd-server: accepted N, max concurrent M,
 *       bytes B" (B: bytes echoed).
 *   conn-herd client HOST PORT N [--bytes B] [--inflight K] [--ready FILE]
 *                                [--hold-secs S] [--write-first]
 *       Opens N connections, at most K (256) connects in progress at once.
 *       A round: every connection sends B (4096) bytes of a pattern of
 *       (connection, round, offset) and reads the B bytes back, all
 *       connections at the same time; round 0 runs as they open (with
 *       --write-first a connection reads nothing before it has written its
 *       B bytes: a program that fills both directions' buffers before it
 *       reads, which TCP's large buffers carry and small rings do not
 *       without a switch). After each
 *       round: "herd-client: round R: N connections verified, B bytes each
 *       way in T s" on stderr and, with --ready, "R\n" in FILE (written to
 *       FILE.tmp, then renamed). The connections then stay open and idle.
 *       Each SIGUSR1 runs one more round (signals that arrive together
 *       count once: wait for FILE to change before sending the next).
 *       SIGTERM/SIGINT, or S seconds after round 0 (S=0: at once; default:
 *       no limit), ends the client once the round in progress is done
 *       (rounds asked for but not begun are dropped): shutdown(SHUT_WR) on
 *       each connection, read to EOF (nothing more may arrive), close,
 *       exit 0. A second SIGTERM/SIGINT gives up: exit 1.
 *       A wrong, missing or extra byte, an EOF or an error on a connection:
 *       the connection, round and offset, exit 1.
 * Both raise RLIMIT_NOFILE to its hard limit first. Any other error exits 2
 * with a message, a usage error 64.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>

#define BUF_SIZE	(1 << 16)
#define MAX_EVENTS	1024
#define BACKLOG		4096
#define MAX_CONNS	1000000
#define MAX_HOLD_SECS	1000000

static const char *prog = "conn-herd";

static void __attribute__((noreturn)) die(const char *what)
{
	fprintf(stderr, "%s: %s: %s\n", prog, what, strerror(errno));
	exit(2);
}

static void __attribute__((noreturn, format(printf, 1, 2))) fatal(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static void __attribute__((noreturn)) usage(FILE *f, int code)
{
	fprintf(f, "usage: conn-herd server [--bind ADDR] PORT\n"
		   "       conn-herd client HOST PORT N [--bytes B] [--inflight K]\n"
		   "                        [--ready FILE] [--hold-secs S] [--write-first]\n"
		   "  server: epoll echo server, runs until SIGTERM/SIGINT\n"
		   "  client: N connections (K connects at a time, default 256), B bytes\n"
		   "          (default 4096) echoed on each per round, every byte checked;\n"
		   "          round 0 on open, one more per SIGUSR1; FILE gets the last\n"
		   "          round done; closes on SIGTERM/SIGINT or S s after round 0\n"
		   "  exit: 0 ok, 1 verification failed, 2 error, 64 usage\n");
	exit(code);
}

static void __attribute__((noreturn)) usage_error(const char *msg, const char *arg)
{
	fprintf(stderr, "conn-herd: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
	usage(stderr, 64);
}

static uint64_t parse_num(const char *s, const char *what, uint64_t min, uint64_t max)
{
	unsigned long long v;
	char *end;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (*s < '0' || *s > '9' || errno || *end || v < min || v > max) {
		fprintf(stderr, "conn-herd: %s must be a number from %llu to %llu, not '%s'\n",
			what, (unsigned long long)min, (unsigned long long)max, s);
		usage(stderr, 64);
	}
	return v;
}

/* A herd needs an fd per connection; the default soft limit (1024) is far
 * below what tests ask for, the hard limit is what the admin allows. */
static rlim_t raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		die("getrlimit");
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		die("setrlimit");
	return rl.rlim_cur;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Signals are read from a signalfd in the epoll loop, so they are acted on
 * between two I/O events, never halfway through one. */
static int signal_fd(const int *sigs, int n)
{
	sigset_t set;
	int fd;

	sigemptyset(&set);
	for (int i = 0; i < n; i++)
		sigaddset(&set, sigs[i]);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		die("sigprocmask");
	fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (fd < 0)
		die("signalfd");
	return fd;
}

static void epoll_watch(int ep, int op, int fd, uint32_t events, uint64_t data)
{
	struct epoll_event ev = { .events = events, .data.u64 = data };

	if (epoll_ctl(ep, op, fd, &ev) < 0)
		die("epoll_ctl");
}

/* ---- server ---- */

/* Tags of the two fds that are not connections (a pointer is never 1 or 2). */
#define TAG_LISTEN	1
#define TAG_SIGNAL	2

struct sconn {
	int fd;
	bool eof;		/* peer sent FIN: echo what is pending, then close */
	uint8_t *pend;		/* read, not yet taken by the peer */
	size_t plen, poff;
	struct sconn *prev, *next;
};

struct server {
	int ep, lfd, sfd;
	int spare;		/* given up to take a connection when out of fds */
	bool shed_logged;
	struct sconn *conns;
	unsigned long long accepted, live, max_live, bytes, shed, failed;
	uint8_t buf[BUF_SIZE];
};

static int open_listener(const char *addr, const char *port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *ai;
	int fd, rc, one = 1, zero = 0;

	/* No address: "::" with V6ONLY off, which takes IPv4 clients too. */
	hints.ai_family = addr ? AF_UNSPEC : AF_INET6;
	rc = getaddrinfo(addr, port, &hints, &ai);
	if (rc)
		fatal("address %s port %s: %s", addr ? addr : "::", port, gai_strerror(rc));
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket");
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		die("SO_REUSEADDR");
	if (!addr && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0)
		die("IPV6_V6ONLY");
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0)
		die("bind");
	if (listen(fd, BACKLOG) < 0)
		die("listen");
	freeaddrinfo(ai);
	return fd;
}

static unsigned int bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		die("getsockname");
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void sconn_add(struct server *s, int fd)
{
	struct sconn *c = calloc(1, sizeof(*c));

	if (!c)
		die("calloc");
	c->fd = fd;
	c->next = s->conns;
	if (c->next)
		c->next->prev = c;
	s->conns = c;
	s->accepted++;
	if (++s->live > s->max_live)
		s->max_live = s->live;
	epoll_watch(s->ep, EPOLL_CTL_ADD, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
		    (uintptr_t)c);
}

static void sconn_close(struct server *s, struct sconn *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	close(c->fd);
	free(c->pend);
	free(c);
	s->live--;
}

/*
 * Out of fds: the connection stays in the backlog and the (level-triggered)
 * listener would report it again at once, a spin. So give up the spare fd
 * for a moment, take the connection off the queue and close it; its client
 * sees the close. Returns whether accepting can go on.
 */
static bool shed_one(struct server *s)
{
	int fd;

	if (!s->shed_logged) {
		fprintf(stderr, "herd-server: accept: %s at %llu connections: closing new ones\n",
			strerror(errno), s->live);
		s->shed_logged = true;
	}
	if (s->spare < 0) {
		/* Lost the spare fd earlier: back off instead. */
		usleep(10000);
		s->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
		return false;
	}
	close(s->spare);
	fd = accept(s->lfd, NULL, NULL);
	if (fd >= 0) {
		close(fd);
		s->shed++;
	}
	s->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
	return fd >= 0;
}

static void accept_all(struct server *s)
{
	for (;;) {
		int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd >= 0) {
			sconn_add(s, fd);
			continue;
		}
		switch (errno) {
		case EAGAIN:
			return;
		case EMFILE:
		case ENFILE:
			if (!shed_one(s))
				return;
			break;
		case ENOBUFS:
		case ENOMEM:
			usleep(10000);	/* the listener reports it again */
			return;
		case EINTR:
		case ECONNABORTED:
		case EPROTO:
		case EPERM:
		case ENETDOWN:
		case ENETUNREACH:
		case EHOSTDOWN:
		case EHOSTUNREACH:
		case ENONET:
		case ENOPROTOOPT:
		case EOPNOTSUPP:
			break;		/* that one is gone, the next may be fine */
		default:
			die("accept");
		}
	}
}

/* Write until done or the socket is full: the bytes written, or -1. */
static ssize_t put(struct server *s, int fd, const uint8_t *p, size_t n)
{
	size_t done = 0;

	while (done < n) {
		ssize_t w = write(fd, p + done, n - done);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			break;
		if (w < 0)
			return -1;
		done += (size_t)w;
	}
	s->bytes += done;
	return (ssize_t)done;
}

/* The pending bytes: 1 all taken, 0 the socket is full, -1 error. */
static int sconn_flush(struct server *s, struct sconn *c)
{
	ssize_t w = put(s, c->fd, c->pend + c->poff, c->plen - c->poff);

	if (w < 0)
		return -1;
	c->poff += (size_t)w;
	if (c->poff < c->plen)
		return 0;
	free(c->pend);
	c->pend = NULL;
	c->plen = c->poff = 0;
	return 1;
}

static void sconn_stash(struct sconn *c, const uint8_t *p, size_t n)
{
	c->pend = malloc(n);
	if (!c->pend)
		die("malloc");
	memcpy(c->pend, p, n);
	c->plen = n;
	c->poff = 0;
}

/*
 * Edge-triggered: work the connection until the side we wait for says
 * EAGAIN; the next edge (EPOLLIN: more data, EPOLLOUT: the peer took some)
 * brings us back. Echo goes straight from the shared buffer; only what the
 * socket did not take is copied, and nothing is read until it is gone.
 */
static void sconn_service(struct server *s, struct sconn *c)
{
	for (;;) {
		ssize_t n, w;
		int r;

		if (c->pend) {
			r = sconn_flush(s, c);
			if (r < 0)
				goto failed;
			if (r == 0)
				return;
		}
		if (c->eof)
			break;
		n = read(c->fd, s->buf, sizeof(s->buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n < 0)
			goto failed;
		if (n == 0) {
			c->eof = true;
			continue;
		}
		w = put(s, c->fd, s->buf, (size_t)n);
		if (w < 0)
			goto failed;
		if (w < n) {
			sconn_stash(c, s->buf + w, (size_t)(n - w));
			return;
		}
	}
	sconn_close(s, c);
	return;
failed:
	s->failed++;
	sconn_close(s, c);
}

static void server_close_all(struct server *s)
{
	while (s->conns)
		sconn_close(s, s->conns);
	close(s->spare);
	close(s->lfd);
	close(s->sfd);
	close(s->ep);
}

static int run_server(const char *addr, const char *port)
{
	static const int sigs[] = { SIGTERM, SIGINT };
	static struct server s;
	struct epoll_event evs[MAX_EVENTS];
	bool stop = false;

	raise_nofile();
	s.sfd = signal_fd(sigs, 2);
	s.lfd = open_listener(addr, port);
	s.spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (s.spare < 0)
		die("/dev/null");
	s.ep = epoll_create1(EPOLL_CLOEXEC);
	if (s.ep < 0)
		die("epoll_create1");
	epoll_watch(s.ep, EPOLL_CTL_ADD, s.lfd, EPOLLIN, TAG_LISTEN);
	epoll_watch(s.ep, EPOLL_CTL_ADD, s.sfd, EPOLLIN, TAG_SIGNAL);
	fprintf(stderr, "herd-server: listening on %u\n", bound_port(s.lfd));

	while (!stop) {
		int n = epoll_wait(s.ep, evs, MAX_EVENTS, -1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("epoll_wait");
		for (int i = 0; i < n; i++) {
			uint64_t tag = evs[i].data.u64;

			if (tag == TAG_LISTEN)
				accept_all(&s);
			else if (tag == TAG_SIGNAL)
				stop = true;
			else
				sconn_service(&s, (struct sconn *)(uintptr_t)tag);
		}
	}
	fprintf(stderr, "herd-server: accepted %llu, max concurrent %llu, bytes %llu\n",
		s.accepted, s.max_live, s.bytes);
	if (s.shed || s.failed)
		fprintf(stderr, "herd-server: %llu closed for lack of fds, %llu ended by an error\n",
			s.shed, s.failed);
	server_close_all(&s);
	return 0;
}

/* ---- client ---- */

enum cstate { C_NEW, C_CONNECTING, C_RUNNING, C_IDLE, C_CLOSING, C_CLOSED };
enum phase { P_ROUND, P_HOLD, P_CLOSING, P_DONE };

struct cconn {
	int fd;
	enum cstate state;
	uint64_t sent, got;	/* in this round */
};

struct client {
	struct sockaddr_storage addr;
	socklen_t alen;
	uint32_t n, inflight;
	uint64_t bytes;
	const char *ready;
	long hold_secs;		/* < 0: until a signal */
	int ep, sfd;
	struct cconn *c;
	uint32_t opened, connecting, done, closed, round;
	unsigned int more;	/* SIGUSR1s not run yet */
	unsigned int stops;	/* SIGTERM/SIGINTs */
	bool quit;
	bool write_first;	/* --write-first */
	enum phase phase;
	double t0, deadline;	/* deadline < 0: none */
	uint8_t buf[BUF_SIZE];
};

/*
 * Byte OFF of round ROUND on connection ID. It differs between connections
 * and between rounds, so an echo that crossed to another connection or was
 * left over from an earlier round shows as a mismatch; off >> 8 breaks the
 * period of 256 that off * 7 alone would have.
 */
static uint8_t pat(uint32_t id, uint32_t round, uint64_t off)
{
	return (uint8_t)((uint64_t)id * 131 + (uint64_t)round * 17 + off * 7 + (off >> 8));
}

static uint32_t conn_id(const struct client *h, const struct cconn *c)
{
	return (uint32_t)(c - h->c);
}

static void __attribute__((noreturn, format(printf, 4, 5)))
conn_fail(const struct client *h, const struct cconn *c, uint64_t off, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "herd-client: conn %u round %u offset %llu: ", conn_id(h, c), h->round,
		(unsigned long long)off);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void conn_watch(struct client *h, struct cconn *c, int op, uint32_t events)
{
	epoll_watch(h->ep, op, c->fd, events, (uint64_t)conn_id(h, c) + 1);
}

/*
 * Completion (or failure) of the connect shows as EPOLLOUT. SO_REUSEADDR:
 * we close first, so each connection leaves a TIME_WAIT on its ephemeral
 * port for a minute; without the flag a herd of them keeps a server (with
 * the flag) started meanwhile from binding any of those ports.
 */
static void conn_open(struct client *h, struct cconn *c)
{
	int one = 1;

	c->fd = socket(h->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		die("socket");
	if (setsockopt(c->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		die("SO_REUSEADDR");
	if (connect(c->fd, (struct sockaddr *)&h->addr, h->alen) < 0 && errno != EINPROGRESS)
		conn_fail(h, c, 0, "connect: %s", strerror(errno));
	c->state = C_CONNECTING;
	h->connecting++;
	conn_watch(h, c, EPOLL_CTL_ADD, EPOLLOUT);
}

static void open_more(struct client *h)
{
	while (h->opened < h->n && h->connecting < h->inflight)
		conn_open(h, &h->c[h->opened++]);
}

static void conn_end_round(struct client *h, struct cconn *c)
{
	c->state = C_IDLE;
	/* Still watched: while idle, any byte or an EOF is an error. */
	conn_watch(h, c, EPOLL_CTL_MOD, EPOLLIN);
	h->done++;
}

static void conn_begin_round(struct client *h, struct cconn *c)
{
	c->sent = c->got = 0;
	if (!h->bytes) {
		conn_end_round(h, c);
		return;
	}
	c->state = C_RUNNING;
	/* --write-first: nothing is read before everything is written */
	conn_watch(h, c, EPOLL_CTL_MOD, h->write_first ? EPOLLOUT : EPOLLIN | EPOLLOUT);
}

static void conn_connected(struct client *h, struct cconn *c)
{
	socklen_t len = sizeof(int);
	int err = 0;

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		die("SO_ERROR");
	if (err)
		conn_fail(h, c, 0, "connect: %s", strerror(err));
	h->connecting--;
	conn_begin_round(h, c);
	open_more(h);
}

/*
 * One write per EPOLLOUT (level-triggered, so it comes again): on loopback
 * the peer can drain as fast as we write, and writing until EAGAIN would
 * push a whole round through one connection while the others, their echoes
 * and the signalfd wait.
 */
static void conn_send(struct client *h, struct cconn *c)
{
	uint64_t left = h->bytes - c->sent;
	size_t n = left < sizeof(h->buf) ? (size_t)left : sizeof(h->buf);
	ssize_t w;

	for (size_t i = 0; i < n; i++)
		h->buf[i] = pat(conn_id(h, c), h->round, c->sent + i);
	w = write(c->fd, h->buf, n);
	if (w < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (w < 0)
		conn_fail(h, c, c->sent, "write: %s", strerror(errno));
	c->sent += (uint64_t)w;
	/* All sent: only the echo is left to wait for. */
	if (c->sent == h->bytes)
		conn_watch(h, c, EPOLL_CTL_MOD, EPOLLIN);
}

static void conn_check(struct client *h, struct cconn *c, size_t n)
{
	if (!n)
		conn_fail(h, c, c->got, "EOF after %llu of %llu bytes",
			  (unsigned long long)c->got, (unsigned long long)h->bytes);
	for (size_t i = 0; i < n; i++) {
		uint64_t off = c->got + i;
		uint8_t want = pat(conn_id(h, c), h->round, off);

		if (off >= h->bytes)
			conn_fail(h, c, off, "%zu bytes more than were sent", n - i);
		if (h->buf[i] != want)
			conn_fail(h, c, off, "got 0x%02x, want 0x%02x", h->buf[i], want);
	}
	c->got += n;
	if (c->got == h->bytes)
		conn_end_round(h, c);
}

static void conn_recv(struct client *h, struct cconn *c)
{
	ssize_t n = read(c->fd, h->buf, sizeof(h->buf));

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n < 0)
		conn_fail(h, c, c->got, "read: %s", strerror(errno));
	switch (c->state) {
	case C_RUNNING:
		conn_check(h, c, (size_t)n);
		break;
	case C_IDLE:
		if (!n)
			conn_fail(h, c, h->bytes, "EOF while the connection was idle");
		conn_fail(h, c, h->bytes, "%zd bytes arrived while the connection was idle", n);
	case C_CLOSING:
		if (n)
			conn_fail(h, c, h->bytes, "%zd bytes arrived after the last round", n);
		close(c->fd);
		c->fd = -1;
		c->state = C_CLOSED;
		h->closed++;
		break;
	default:
		break;
	}
}

static void conn_event(struct client *h, struct cconn *c, uint32_t events)
{
	if (c->state == C_CONNECTING) {
		conn_connected(h, c);
		return;
	}
	if (c->state == C_RUNNING && (events & EPOLLOUT) && c->sent < h->bytes)
		conn_send(h, c);
	if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) &&
	    !(h->write_first && c->state == C_RUNNING && c->sent < h->bytes))
		conn_recv(h, c);
}

static void __attribute__((noreturn)) give_up(const struct client *h)
{
	if (h->phase == P_CLOSING)
		fprintf(stderr, "herd-client: interrupted while closing: %u of %u connections closed\n",
			h->closed, h->n);
	else
		fprintf(stderr, "herd-client: interrupted in round %u: %u of %u connections done\n",
			h->round, h->done, h->n);
	exit(1);
}

static void on_signals(struct client *h)
{
	struct signalfd_siginfo si;
	ssize_t n;

	while ((n = read(h->sfd, &si, sizeof(si))) == sizeof(si)) {
		if (si.ssi_signo == SIGUSR1) {
			h->more++;
			continue;
		}
		/* The first one lets the round in hand finish; a second, the
		 * round must be stuck. */
		if (h->stops++)
			give_up(h);
		h->quit = true;
	}
	if (n < 0 && errno != EAGAIN && errno != EINTR)
		die("signalfd read");
}

/* Through FILE.tmp and rename: a reader of FILE sees the previous round
 * or this one, never an empty or half-written file. */
static void write_ready(const char *path, uint32_t round)
{
	char tmp[PATH_MAX];
	int fd;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		fatal("--ready path too long");
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		die(tmp);
	if (dprintf(fd, "%u\n", round) < 0)
		die(tmp);
	if (close(fd) < 0)
		die(tmp);
	if (rename(tmp, path) < 0)
		die(path);
}

static void finish_round(struct client *h)
{
	fprintf(stderr, "herd-client: round %u: %u connections verified, %llu bytes each way in %.2f s\n",
		h->round, h->n, (unsigned long long)h->bytes, now() - h->t0);
	if (h->ready)
		write_ready(h->ready, h->round);
	if (h->round == 0 && h->hold_secs >= 0)
		h->deadline = now() + (double)h->hold_secs;
	h->phase = P_HOLD;
}

static void start_round(struct client *h)
{
	h->round++;
	h->done = 0;
	h->t0 = now();
	h->phase = P_ROUND;
	for (uint32_t i = 0; i < h->n; i++)
		conn_begin_round(h, &h->c[i]);
}

static void begin_close(struct client *h)
{
	h->phase = P_CLOSING;
	for (uint32_t i = 0; i < h->n; i++) {
		struct cconn *c = &h->c[i];

		if (shutdown(c->fd, SHUT_WR) < 0)
			conn_fail(h, c, h->bytes, "shutdown: %s", strerror(errno));
		c->state = C_CLOSING;	/* already watched for EPOLLIN */
	}
}

/* Move on once the work in hand is done: report the round, then the close
 * (a signal, --hold-secs), the next round (SIGUSR1), or wait. */
static void advance(struct client *h)
{
	for (;;) {
		if (h->phase == P_ROUND && h->done == h->n) {
			finish_round(h);
		} else if (h->phase == P_HOLD && h->quit) {
			begin_close(h);
		} else if (h->phase == P_HOLD && h->more) {
			h->more--;
			start_round(h);
		} else {
			if (h->phase == P_CLOSING && h->closed == h->n)
				h->phase = P_DONE;
			return;
		}
	}
}

static int wait_ms(const struct client *h)
{
	double left;

	if (h->deadline < 0 || h->quit)
		return -1;
	left = (h->deadline - now()) * 1000;
	if (left <= 0)
		return 0;
	return left > INT_MAX - 1 ? INT_MAX : (int)left + 1;
}

static void resolve(struct client *h, const char *host, const char *port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
	int rc = getaddrinfo(host, port, &hints, &ai);

	if (rc)
		fatal("%s port %s: %s", host, port, gai_strerror(rc));
	memcpy(&h->addr, ai->ai_addr, ai->ai_addrlen);
	h->alen = ai->ai_addrlen;
	freeaddrinfo(ai);
}

static int run_client(struct client *h, const char *host, const char *port)
{
	static const int sigs[] = { SIGUSR1, SIGTERM, SIGINT };
	struct epoll_event evs[MAX_EVENTS];
	rlim_t lim = raise_nofile();

	/* Fail now rather than with EMFILE halfway through the herd. */
	if ((rlim_t)h->n + 16 > lim)
		fatal("%u connections need more fds than RLIMIT_NOFILE (%llu) allows",
		      h->n, (unsigned long long)lim);
	resolve(h, host, port);
	h->sfd = signal_fd(sigs, 3);
	h->ep = epoll_create1(EPOLL_CLOEXEC);
	if (h->ep < 0)
		die("epoll_create1");
	epoll_watch(h->ep, EPOLL_CTL_ADD, h->sfd, EPOLLIN, 0);
	h->c = calloc(h->n, sizeof(*h->c));
	if (!h->c)
		die("calloc");
	h->deadline = -1;
	h->t0 = now();
	open_more(h);

	while (h->phase != P_DONE) {
		int n = epoll_wait(h->ep, evs, MAX_EVENTS, wait_ms(h));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("epoll_wait");
		for (int i = 0; i < n; i++) {
			uint64_t tag = evs[i].data.u64;

			if (!tag)
				on_signals(h);
			else
				conn_event(h, &h->c[tag - 1], evs[i].events);
		}
		if (h->deadline >= 0 && now() >= h->deadline)
			h->quit = true;
		advance(h);
	}
	fprintf(stderr, "herd-client: closed %u connections, last round %u\n", h->n, h->round);
	free(h->c);
	close(h->ep);
	close(h->sfd);
	return 0;
}

int main(int argc, char **argv)
{
	static struct client h = { .bytes = 4096, .inflight = 256, .hold_secs = -1 };
	const char *pos[3], *bind_addr = NULL;
	int npos = 0;
	bool server;

	if (argc < 2)
		usage(stderr, 64);
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))
		usage(stdout, 0);
	if (!strcmp(argv[1], "server"))
		server = true;
	else if (!strcmp(argv[1], "client"))
		server = false;
	else
		usage_error("unknown mode", argv[1]);

	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *v = argv[i + 1];

		if (strncmp(a, "--", 2)) {
			if (npos == (server ? 1 : 3))
				usage_error("too many arguments", a);
			pos[npos++] = a;
			continue;
		}
		if (!strcmp(a, "--help"))
			usage(stdout, 0);
		if (!server && !strcmp(a, "--write-first")) {
			h.write_first = true;
			continue;
		}
		if (!v)
			usage_error("missing value for", a);
		i++;
		if (server && !strcmp(a, "--bind"))
			bind_addr = v;
		else if (!server && !strcmp(a, "--bytes"))
			h.bytes = parse_num(v, a, 0, 1ULL << 40);
		else if (!server && !strcmp(a, "--inflight"))
			h.inflight = (uint32_t)parse_num(v, a, 1, MAX_CONNS);
		else if (!server && !strcmp(a, "--ready"))
			h.ready = v;
		else if (!server && !strcmp(a, "--hold-secs"))
			h.hold_secs = (long)parse_num(v, a, 0, MAX_HOLD_SECS);
		else
			usage_error("unknown option", a);
	}
	if (npos != (server ? 1 : 3))
		usage_error("missing arguments", NULL);

	signal(SIGPIPE, SIG_IGN);	/* a reset peer shows as EPIPE, not a kill */
	if (server) {
		prog = "herd-server";
		return run_server(bind_addr, pos[0]);
	}
	prog = "herd-client";
	h.n = (uint32_t)parse_num(pos[2], "N", 1, MAX_CONNS);
	return run_client(&h, pos[0], pos[1]);
}
