// SPDX-License-Identifier: MIT
/*
 * Data-path hardening of libivsock.so, end to end on loopback (private
 * ivsockd + ivsock-agent, children of this program re-exec'd under
 * LD_PRELOAD): the paused acceptor (stopped between its two state changes)
 * still wins and nothing is lost; a writer blocked on a full ring whose peer
 * vanished (agent unable to clean up) gets ECONNRESET/EPIPE, blocking, in
 * poll(POLLOUT) and in epoll(EPOLLOUT); a scribbler overwriting the
 * victim's own shared index words makes no poll() report readable; a
 * revoked channel reads as a reset; non-blocking sendfile() of a large file
 * to a slow reader in an epoll loop; pre-forked workers that cannot reach
 * the agent abandon each offer at once (counted as
 * fallback_acceptor_abandoned, not as a timeout); a server slow to accept()
 * keeps all of 20 concurrent connections on the rings. Every byte checked;
 * the shim's counters, not timings, prove the path.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "ivsock/agent_client.h"
#include "ivsock/channel.h"
#include "ivsock/slot.h"

extern char **environ;

static char top[PATH_MAX], self[PATH_MAX];
static char dir[64];
static char agent_name[64];
static pid_t daemon_pid = -1, agent_pid = -1;

/* ---------------- children (run under the shim) ---------------- */

static uint8_t pat(uint64_t i)
{
	return (uint8_t)(i * 131 + (i >> 12) + 7);
}

static void fill(uint8_t *b, size_t n, uint64_t off)
{
	for (size_t i = 0; i < n; i++)
		b[i] = pat(off + i);
}

static bool check(const uint8_t *b, size_t n, uint64_t off)
{
	for (size_t i = 0; i < n; i++)
		if (b[i] != pat(off + i))
			return false;
	return true;
}

static int listen_any(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t l = sizeof(a);
	int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);

	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 128) < 0)
		exit(90);
	getsockname(fd, (struct sockaddr *)&a, &l);
	printf("listening %u\n", ntohs(a.sin_port));
	fflush(stdout);
	return fd;
}

static int dial(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		exit(91);
	return fd;
}

/* Blocking exact I/O of pattern bytes starting at stream offset off. */
static int send_pat(int fd, size_t n, uint64_t off)
{
	uint8_t b[16384];

	while (n) {
		size_t k = n < sizeof(b) ? n : sizeof(b);
		ssize_t w;

		fill(b, k, off);
		w = send(fd, b, k, MSG_NOSIGNAL);
		if (w <= 0) {
			if (w < 0 && errno == EINTR)
				continue;
			return -1;
		}
		n -= (size_t)w;
		off += (uint64_t)w;
	}
	return 0;
}

static int recv_pat(int fd, size_t n, uint64_t off)
{
	uint8_t b[16384];

	while (n) {
		ssize_t r = recv(fd, b, n < sizeof(b) ? n : sizeof(b), 0);

		if (r <= 0) {
			if (r < 0 && errno == EINTR)
				continue;
			return -1;
		}
		if (!check(b, (size_t)r, off))
			return -2;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

/* server: accept one, read n, answer n, close */
static int c_echo_srv(size_t n)
{
	int l = listen_any(), fd = accept(l, NULL, NULL);

	if (fd < 0)
		return 10;
	if (recv_pat(fd, n, 0) < 0)
		return 11;
	if (send_pat(fd, n, 1000) < 0)
		return 12;
	close(fd);
	return 0;
}

static int c_echo_cli(int port, size_t n)
{
	int fd = dial(port);

	if (send_pat(fd, n, 0) < 0)
		return 20;
	if (recv_pat(fd, n, 1000) < 0)
		return 21;
	close(fd);
	return 0;
}

/* echo client that tells apart how it ended: 0 every byte right, 30 an
 * error (a reset), 31 a wrong byte */
static int c_echo_cli_strict(int port, size_t n)
{
	int fd = dial(port), r = 0;
	uint64_t off = 1000;
	uint8_t b[16384];

	if (send_pat(fd, n, 0) < 0)
		return 30;
	/* a slow reader: 16 KiB, then 300 us, so that the move of the
	 * server's stream to each new ring finds it still reading TCP */
	while (n && r == 0) {
		ssize_t k = recv(fd, b, n < sizeof(b) ? n : sizeof(b), 0);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			r = -1;
		else if (!check(b, (size_t)k, off))
			r = -2;
		else {
			n -= (size_t)k;
			off += (uint64_t)k;
			usleep(300);
		}
	}
	printf("strict: recv %s (%s)\n", r == 0 ? "complete" : r == -1 ? "error" : "mismatch",
	       r == -1 ? strerror(errno) : "-");
	close(fd);
	return r == 0 ? 0 : r == -1 ? 30 : 31;
}

/* server: accept one, read n, then end of stream */
static int c_sink_srv(size_t n)
{
	int l = listen_any(), fd = accept(l, NULL, NULL);
	char c;

	if (fd < 0 || recv_pat(fd, n, 0) < 0)
		return 13;
	return recv(fd, &c, 1, 0) == 0 ? 0 : 14;
}

static int c_send_close(int port, size_t n, const char *go)
{
	int fd = dial(port);

	if (send_pat(fd, n, 0) < 0)
		return 22;
	while (access(go, F_OK)) /* until the acceptor is stopped */
		usleep(10000);
	close(fd);
	return 0;
}

/* server that accepts one connection and never reads (waits to be killed) */
static int c_stall_srv(void)
{
	int l = listen_any(), fd = accept(l, NULL, NULL);

	(void)fd;
	for (;;)
		pause();
	return 0;
}

/* writer until the peer is found gone: mode 0 blocking, 1 poll, 2 epoll */
static int c_writer(int port, int mode)
{
	int fd = dial(port), ep = -1;
	uint8_t b[65536];
	long spins = 0;

	memset(b, 'w', sizeof(b));
	signal(SIGPIPE, SIG_IGN);
	if (mode) {
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
		if (mode == 2) {
			struct epoll_event ev = { .events = EPOLLOUT, .data.fd = fd };

			ep = epoll_create1(0);
			epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
		}
	}
	printf("connected\n");
	fflush(stdout);
	for (;;) {
		ssize_t w = send(fd, b, sizeof(b), 0);

		if (w > 0)
			continue;
		if (w < 0 && (errno == EPIPE || errno == ECONNRESET)) {
			printf("writer: %s\n", strerror(errno));
			return 0;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (!(w < 0 && errno == EAGAIN) || mode == 0)
			return 30;
		if (++spins > 200000)
			return 31; /* readiness said writable forever: a spin */
		if (mode == 1) {
			struct pollfd p = { .fd = fd, .events = POLLOUT };

			poll(&p, 1, -1);
		} else {
			struct epoll_event ev;

			epoll_wait(ep, &ev, 1, -1);
		}
	}
}

/* victim of the scribbler: poll for POLLIN, count readiness that no byte
 * backs, then read n bytes exactly */
static int c_victim(int port, size_t n)
{
	int fd = dial(port);
	long spurious = 0, polls = 0;
	uint8_t c;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int r = poll(&p, 1, 200);

		polls++;
		if (r <= 0)
			continue;
		if (recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 1)
			break;
		if (++spurious > 1000)
			break;
	}
	printf("victim: spurious=%ld polls=%ld\n", spurious, polls);
	fflush(stdout);
	if (recv_pat(fd, n, 0) < 0)
		return 40;
	return 0;
}

/* server: accept one, wait for file go, send n bytes, close */
static int c_late_srv(const char *go, size_t n)
{
	int l = listen_any(), fd = accept(l, NULL, NULL);

	while (access(go, F_OK))
		usleep(10000);
	if (send_pat(fd, n, 0) < 0)
		return 41;
	close(fd);
	return 0;
}

/* revocation: both ends exchange a byte, then wait for the reset */
static int c_revoke_end(int fd, bool first)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char c = 'x';

	signal(SIGPIPE, SIG_IGN);
	if (first ? send(fd, &c, 1, 0) != 1 || recv(fd, &c, 1, 0) != 1
		  : recv(fd, &c, 1, 0) != 1 || send(fd, &c, 1, 0) != 1)
		return 50;
	printf("exchanged\n");
	fflush(stdout);
	if (poll(&p, 1, 20000) != 1 || !(p.revents & POLLERR) || !(p.revents & POLLHUP))
		return 51;
	if (recv(fd, &c, 1, 0) != -1 || errno != ECONNRESET)
		return 52;
	if (send(fd, &c, 1, 0) != -1 || errno != EPIPE)
		return 53;
	return 0;
}

/* sendfile server: non-blocking socket, epoll for EPOLLOUT */
static int c_sendfile_srv(const char *file, size_t n)
{
	int l = listen_any(), fd = accept(l, NULL, NULL), in = open(file, O_RDONLY);
	int ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLOUT, .data.fd = fd };
	off_t off = 0;

	if (fd < 0 || in < 0 || ep < 0)
		return 60;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
	while ((size_t)off < n) {
		off_t before = off;
		ssize_t w = sendfile(fd, in, &off, n - (size_t)off);

		if (w < 0 && errno == EAGAIN) {
			if (off != before)
				return 61; /* offset moved without bytes sent */
			epoll_wait(ep, &ev, 1, 10000);
			continue;
		}
		if (w <= 0) {
			fprintf(stderr, "sendfile returned %zd at %lld: file truncated?\n", w,
				(long long)off);
			return 62;
		}
		if (off - before != w)
			return 63;
	}
	close(fd);
	return 0;
}

static int c_slow_sink(int port, size_t n)
{
	int fd = dial(port);
	uint8_t b[4096];
	uint64_t off = 0;

	while (off < n) {
		ssize_t r = recv(fd, b, sizeof(b), 0);

		if (r <= 0)
			return 70;
		if (!check(b, (size_t)r, off))
			return 71;
		off += (uint64_t)r;
		if ((off & 0xfffff) < 4096)
			usleep(20000); /* slow reader: the ring fills */
	}
	return recv(fd, b, 1, 0) == 0 ? 0 : 72;
}

/* pre-forked server: workers that cannot reach the agent answer each
 * request over TCP. Each worker drops to nobody and forks again; the agent
 * refuses the grandchild's HELLO (it is not root and not in the agent's
 * group), so that process has the listener's mapping but no agent. */
static int c_prefork_srv(size_t n)
{
	int l = listen_any();

	for (int w = 0; w < 2; w++) {
		if (fork() == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (setgid(65534) < 0 || setuid(65534) < 0)
				_exit(75);
			/* setuid() clears the parent-death signal: arm it again */
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() == 1)
				_exit(0);
			if (fork() != 0) {
				for (;;)
					pause();
			}
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			for (;;) {
				int fd = accept(l, NULL, NULL);

				if (fd < 0)
					continue;
				if (recv_pat(fd, 100, 0) == 0)
					send_pat(fd, n, 500);
				close(fd);
			}
		}
	}
	for (;;)
		pause();
	return 0;
}

static int c_requests(int port, int count, size_t n)
{
	for (int i = 0; i < count; i++) {
		int fd = dial(port);

		if (send_pat(fd, 100, 0) < 0 || recv_pat(fd, n, 500) < 0)
			return 80 + i;
		close(fd);
	}
	return 0;
}

/* slow acceptor: sleeps before each accept(), a thread per connection
 * answering `rounds` keep-alive requests */
static size_t g_n;
static int g_rounds, g_port;

static void *serve_conn(void *arg)
{
	int fd = (int)(intptr_t)arg;

	for (int r = 0; r < g_rounds; r++)
		if (recv_pat(fd, 1024, 0) < 0 || send_pat(fd, g_n, 77) < 0)
			break;
	close(fd);
	return NULL;
}

static int c_slow_accept_srv(int conns, int delay_ms)
{
	int l = listen_any();
	pthread_t t[64];

	for (int i = 0; i < conns && i < 64; i++) {
		int fd;

		usleep((useconds_t)delay_ms * 1000);
		fd = accept(l, NULL, NULL);
		if (fd < 0)
			return 100;
		pthread_create(&t[i], NULL, serve_conn, (void *)(intptr_t)fd);
	}
	for (int i = 0; i < conns && i < 64; i++)
		pthread_join(t[i], NULL);
	return 0;
}

static _Atomic int g_fail;

static void *client_conn(void *arg)
{
	int fd = dial(g_port);

	(void)arg;
	for (int r = 0; r < g_rounds; r++)
		if (send_pat(fd, 1024, 0) < 0 || recv_pat(fd, g_n, 77) < 0) {
			g_fail = 1;
			break;
		}
	close(fd);
	return NULL;
}

static int c_concurrent(int port, int conns)
{
	pthread_t t[64];

	g_port = port;
	for (int i = 0; i < conns && i < 64; i++)
		pthread_create(&t[i], NULL, client_conn, NULL);
	for (int i = 0; i < conns && i < 64; i++)
		pthread_join(t[i], NULL);
	return g_fail ? 101 : 0;
}

static int child_main(int argc, char **argv)
{
	const char *r = argv[2];
	long a = argc > 3 ? atol(argv[3]) : 0, b = argc > 4 ? atol(argv[4]) : 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(r, "echo-srv"))
		return c_echo_srv((size_t)a);
	if (!strcmp(r, "echo-cli"))
		return c_echo_cli((int)a, (size_t)b);
	if (!strcmp(r, "sink-srv"))
		return c_sink_srv((size_t)a);
	if (!strcmp(r, "send-close"))
		return c_send_close((int)a, (size_t)b, argv[5]);
	if (!strcmp(r, "stall-srv"))
		return c_stall_srv();
	if (!strcmp(r, "writer"))
		return c_writer((int)a, (int)b);
	if (!strcmp(r, "victim"))
		return c_victim((int)a, (size_t)b);
	if (!strcmp(r, "resize-srv") || !strcmp(r, "tstart-srv") || !strcmp(r, "promreq-srv"))
		return c_echo_srv((size_t)a);
	if (!strcmp(r, "resize-cli"))
		return c_echo_cli((int)a, (size_t)b);
	if (!strcmp(r, "tstart-cli") || !strcmp(r, "rxready-cli") || !strcmp(r, "rwant-cli") ||
	    !strcmp(r, "promreq-cli"))
		return c_echo_cli_strict((int)a, (size_t)b);
	if (!strcmp(r, "late-srv"))
		return c_late_srv(argv[3], (size_t)b);
	if (!strcmp(r, "revoke-srv")) {
		int l = listen_any();

		return c_revoke_end(accept(l, NULL, NULL), false);
	}
	if (!strcmp(r, "revoke-cli"))
		return c_revoke_end(dial((int)a), true);
	if (!strcmp(r, "sendfile-srv"))
		return c_sendfile_srv(argv[3], (size_t)b);
	if (!strcmp(r, "slow-sink"))
		return c_slow_sink((int)a, (size_t)b);
	if (!strcmp(r, "prefork-srv"))
		return c_prefork_srv((size_t)a);
	if (!strcmp(r, "requests"))
		return c_requests((int)a, (int)b, (size_t)atol(argv[5]));
	if (!strcmp(r, "slow-accept-srv")) {
		g_n = (size_t)atol(argv[6]);
		g_rounds = atoi(argv[7]);
		return c_slow_accept_srv((int)a, (int)b);
	}
	if (!strcmp(r, "concurrent")) {
		g_n = (size_t)atol(argv[6]);
		g_rounds = atoi(argv[7]);
		return c_concurrent((int)a, (int)b);
	}
	return 2;
}

/* ---------------- the test driver ---------------- */

static pid_t spawn(char *const argv[], char *const envp[], const char *out_file)
{
	posix_spawn_file_actions_t fa;
	pid_t pid;

	posix_spawn_file_actions_init(&fa);
	if (out_file) {
		posix_spawn_file_actions_addopen(&fa, 1, out_file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		posix_spawn_file_actions_adddup2(&fa, 1, 2);
	}
	if (posix_spawn(&pid, argv[0], &fa, NULL, argv, envp) != 0)
		pid = -1;
	posix_spawn_file_actions_destroy(&fa);
	return pid;
}

static int reap(pid_t pid, int secs)
{
	int st;

	for (int i = 0; i < secs * 100; i++) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return -1;
}

static bool file_has(const char *file, const char *needle)
{
	char buf[16384];
	FILE *f = fopen(file, "r");
	size_t n;

	if (!f)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return strstr(buf, needle) != NULL;
}

/* Counter name in the last stats line of file (-1: absent). */
static long stat_of(const char *file, const char *name)
{
	char buf[65536], key[80], *p, *last = NULL;
	FILE *f = fopen(file, "r");
	size_t n;

	if (!f)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	snprintf(key, sizeof(key), " %s=", name);
	for (p = strstr(buf, key); p; p = strstr(p + 1, key))
		last = p;
	return last ? strtol(last + strlen(key), NULL, 10) : -1;
}

static char **env_with(const char *extra1, const char *extra2)
{
	static char *env[256];
	static char pre[PATH_MAX + 16], ag[96];
	int n = 0;

	for (char **e = environ; *e && n < 240; e++)
		if (strncmp(*e, "LD_PRELOAD=", 11) && strncmp(*e, "IVSOCK_", 7))
			env[n++] = *e;
	if ((size_t)snprintf(pre, sizeof(pre), "LD_PRELOAD=%s/preload/libivsock.so", top) >=
	    sizeof(pre))
		abort();
	snprintf(ag, sizeof(ag), "IVSOCK_AGENT=%s", agent_name);
	env[n++] = pre;
	env[n++] = ag;
	env[n++] = "IVSOCK_STATS=1";
	if (extra1)
		env[n++] = (char *)extra1;
	if (extra2)
		env[n++] = (char *)extra2;
	/* ASan build: the children are this (instrumented) program, so the
	 * runtime is there even though the preloaded .so comes first */
	if (getenv("IVSOCK_SANITIZER") && !strcmp(getenv("IVSOCK_SANITIZER"), "asan"))
		env[n++] = "ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=0";
	env[n] = NULL;
	return env;
}

/* Start a shimmed child of this program; output into dir/tag. */
static pid_t child(const char *tag, char **env, const char *a1, const char *a2,
		   const char *a3, const char *a4, const char *a5)
{
	char out[160];
	char *argv[] = { self, "--child", (char *)tag, (char *)a1, (char *)a2, (char *)a3,
			 (char *)a4, (char *)a5, NULL };
	char *t = strdup(tag);

	snprintf(out, sizeof(out), "%s/%s.out", dir, tag);
	argv[2] = t;
	for (char *p = strchr(t, '#'); p; p = NULL)
		*p = '\0'; /* "role#n": several children of one role */
	pid_t pid = spawn(argv, env, out);

	free(t);
	return pid;
}

static void out_of(char *buf, size_t n, const char *tag)
{
	snprintf(buf, n, "%s/%s.out", dir, tag);
}

/* Port a listening child printed. */
static int port_of(const char *tag)
{
	char f[160], line[256];
	unsigned p = 0;

	out_of(f, sizeof(f), tag);
	for (int i = 0; i < 500 && !file_has(f, "listening "); i++)
		usleep(10000);
	FILE *fp = fopen(f, "r");

	while (fp && fgets(line, sizeof(line), fp))
		if (sscanf(line, "listening %u", &p) == 1)
			break;
	if (fp)
		fclose(fp);
	assert_true(p > 0);
	return (int)p;
}

static char *num(long v)
{
	static char b[8][24];
	static int i;
	char *r = b[i++ & 7];

	snprintf(r, 24, "%ld", v);
	return r;
}

static char proc_state(pid_t pid)
{
	char f[64], buf[512], *p;
	FILE *fp;
	size_t n;

	snprintf(f, sizeof(f), "/proc/%d/stat", (int)pid);
	fp = fopen(f, "r");
	if (!fp)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, fp);
	fclose(fp);
	buf[n] = '\0';
	p = strrchr(buf, ')');
	return p && p[1] && p[2] ? p[2] : 0;
}

#define NEED_AGENT() do { if (agent_pid <= 0) skip(); } while (0)

/* Finding 8: the acceptor stops right after its agent attached it (the
 * state moves are the agent's now, in one request) and before it mapped
 * the block, for longer than the connector's attach timeout; the connector
 * must not fall back, and every byte arrives once, over the rings. */
static void paused_acceptor(void **state)
{
	char f[160];
	pid_t s, c;
	int port, i;

	(void)state;
	NEED_AGENT();
	s = child("echo-srv", env_with("IVSOCK_TEST_PAUSE_ACCEPTING=1", NULL),
		  num(4 << 20), NULL, NULL, NULL, NULL);
	port = port_of("echo-srv");
	c = child("echo-cli", env_with("IVSOCK_ATTACH_MS=100", "IVSOCK_ATTACH_MAX_MS=200"),
		  num(port), num(4 << 20), NULL, NULL, NULL);
	for (i = 0; i < 1000 && proc_state(s) != 'T'; i++)
		usleep(10000);
	assert_int_equal(proc_state(s), 'T'); /* stopped in the window */
	usleep(1500000); /* several attach timeouts of the connector */
	kill(s, SIGCONT);
	assert_int_equal(reap(c, 60), 0);
	assert_int_equal(reap(s, 10), 0);
	out_of(f, sizeof(f), "echo-cli");
	assert_int_equal(stat_of(f, "accelerated_connect"), 1);
	assert_int_equal(stat_of(f, "taken_back_bytes"), 0);
	assert_int_equal(stat_of(f, "fallback_attach_timeout"), 0);
	assert_int_equal(stat_of(f, "fallback_channel_vanished"), 0);
	assert_int_equal(stat_of(f, "ring_rx_bytes"), 4 << 20);
	out_of(f, sizeof(f), "echo-srv");
	assert_int_equal(stat_of(f, "accelerated_accept"), 1);
}

/* Same, and the connector closes while the acceptor is still paused: its
 * bytes, then end of stream, must reach the acceptor once it resumes. */
static void paused_acceptor_close(void **state)
{
	char f[160], go[160];
	pid_t s, c;
	int port, i;

	(void)state;
	NEED_AGENT();
	snprintf(go, sizeof(go), "%s/go-close", dir);
	unlink(go);
	s = child("sink-srv", env_with("IVSOCK_TEST_PAUSE_ACCEPTING=1", NULL),
		  num(60000), NULL, NULL, NULL, NULL);
	port = port_of("sink-srv");
	c = child("send-close", env_with("IVSOCK_ATTACH_MS=100", "IVSOCK_ATTACH_MAX_MS=200"),
		  num(port), num(60000), go, NULL, NULL);
	for (i = 0; i < 1000 && proc_state(s) != 'T'; i++)
		usleep(10000);
	assert_int_equal(proc_state(s), 'T');
	close(open(go, O_CREAT | O_WRONLY, 0644));
	assert_int_equal(reap(c, 30), 0); /* closed while the acceptor is stopped */
	kill(s, SIGCONT);
	assert_int_equal(reap(s, 30), 0);
	out_of(f, sizeof(f), "send-close");
	assert_int_equal(stat_of(f, "taken_back_bytes"), 0);
	assert_int_equal(stat_of(f, "ring_tx_bytes"), 60000);
	out_of(f, sizeof(f), "sink-srv");
	assert_int_equal(stat_of(f, "accelerated_accept"), 1);
	assert_int_equal(stat_of(f, "ring_rx_bytes"), 60000);
}

/* Finding 9: a writer blocked on a full ring; its peer is killed while the
 * agent cannot clean up (stopped): the kernel connection's FIN must end the
 * wait with EPIPE/ECONNRESET. */
static void writer_peer_vanished(int mode)
{
	char f[160], tag[32], stag[32];
	pid_t s, c;
	int port;

	snprintf(stag, sizeof(stag), "stall-srv#%d", mode);
	snprintf(tag, sizeof(tag), "writer#%d", mode);
	s = child(stag, env_with(NULL, NULL), NULL, NULL, NULL, NULL, NULL);
	port = port_of(stag);
	c = child(tag, env_with(NULL, NULL), num(port), num(mode), NULL, NULL, NULL);
	out_of(f, sizeof(f), tag);
	for (int i = 0; i < 1000 && !file_has(f, "connected"); i++)
		usleep(10000);
	usleep(300000); /* the writer fills the ring and waits (or will) */
	kill(agent_pid, SIGSTOP);
	kill(s, SIGKILL);
	reap(s, 5);
	/* the answer must come while the agent is still stopped (it could
	 * have cleaned up otherwise); exit may need the agent again */
	out_of(f, sizeof(f), tag);
	for (int i = 0; i < 1500 && !file_has(f, "writer: "); i++)
		usleep(10000);
	bool told = file_has(f, "writer: ");

	kill(agent_pid, SIGCONT);
	assert_true(told);
	assert_int_equal(reap(c, 15), 0);
	assert_int_equal(stat_of(f, "accelerated_connect"), 1);
}

static void writer_blocking(void **state) { (void)state; NEED_AGENT(); writer_peer_vanished(0); }
static void writer_poll(void **state) { (void)state; NEED_AGENT(); writer_peer_vanished(1); }
static void writer_epoll(void **state) { (void)state; NEED_AGENT(); writer_peer_vanished(2); }

/* Find the CONNECTED channel whose tuple has destination port dport. */
static int find_chan(struct ivsock_region *rg, int dport, uint32_t *gen)
{
	for (int k = 0; k < 500; k++) {
		for (uint32_t i = 0; i < rg->channel_cap; i++) {
			struct ivsock_slot_val v = ivsock_slot_get(&rg->channels[i].slot);

			if (v.state == IVSOCK_CHAN_CONNECTED && rg->channels[i].tuple.dport == dport) {
				*gen = v.gen;
				return (int)i;
			}
		}
		usleep(10000);
	}
	return -1;
}

/* A domain member that maps the whole region read-write, as a hostile
 * process of the lab can (nothing is enforced on a memfd: docs/lab.md). */
static void map_whole(struct ivsock_agent_conn *ac, struct ivsock_region *rg)
{
	void *p;

	assert_true(ac->region_fd >= 0);
	p = mmap(NULL, (size_t)ac->info.region_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		 ac->region_fd, 0);
	assert_true(p != MAP_FAILED);
	assert_int_equal(ivsock_region_attach(rg, p, (size_t)ac->info.region_size), 0);
}

/* Finding 11: a third party scribbles the victim's own index words (the
 * head of the ring it reads, the tail of the ring it writes); its poll()
 * must not report readable, then the real data arrives exactly. */
static void scribbled_own_index(void **state)
{
	struct ivsock_agent_conn ac;
	struct ivsock_region rg;
	char f[160], go[160];
	uint32_t gen, h0, t0;
	struct ivsock_ring_cons *rx;
	struct ivsock_ring_prod *tx;
	uint8_t *blk;
	pid_t s, c;
	int port, ci, cls;

	(void)state;
	NEED_AGENT();
	memset(&ac, 0, sizeof(ac));
	if (ivsock_agent_connect(agent_name, &ac) < 0)
		skip();
	snprintf(go, sizeof(go), "%s/go", dir);
	unlink(go);
	s = child("late-srv", env_with(NULL, NULL), go, num(1 << 20), NULL, NULL, NULL);
	port = port_of("late-srv");
	c = child("victim", env_with(NULL, NULL), num(port), num(1 << 20), NULL, NULL, NULL);
	map_whole(&ac, &rg);
	ci = find_chan(&rg, port, &gen);
	assert_true(ci >= 0);
	/* the victim is the connector: it reads s2c, writes c2s; both words
	 * are in its own ctl page (half 0 of the block) */
	blk = ivsock_region_block_mem(&rg, rg.channels[ci].block);
	cls = ivsock_region_block_class(&rg, rg.channels[ci].block);
	assert_non_null(blk);
	assert_true(cls >= 0);
	rx = &ivsock_block_ctl(blk, rg.class[cls].ring_size, 0)->cons;
	tx = &ivsock_block_ctl(blk, rg.class[cls].ring_size, 0)->prod;
	h0 = ivsock_load_relaxed(&rx->head);
	t0 = ivsock_load_relaxed(&tx->tail);
	srandom(1);
	for (uint64_t end = (uint64_t)time(NULL) + 2; (uint64_t)time(NULL) < end;) {
		ivsock_store_relaxed(&rx->head, (uint32_t)random());
		ivsock_store_relaxed(&tx->tail, (uint32_t)random());
		usleep(50);
	}
	ivsock_store_relaxed(&rx->head, h0);
	ivsock_store_relaxed(&tx->tail, t0);
	close(open(go, O_CREAT | O_WRONLY, 0644));
	assert_int_equal(reap(c, 30), 0);
	assert_int_equal(reap(s, 10), 0);
	out_of(f, sizeof(f), "victim");
	assert_true(file_has(f, "victim: spurious=0 "));
	assert_int_equal(stat_of(f, "ring_rx_bytes"), 1 << 20);
	ivsock_agent_close(&ac);
}

/* An echo of n bytes each way between children of roles srv and cli, and
 * the whole region mapped read-write to attack it (the caller skips the
 * test when the agent is not there). */
struct attack {
	struct ivsock_agent_conn ac;
	struct ivsock_region rg;
	pid_t s, c;
	int port;
};

static bool attack_start(struct attack *a, const char *srv, const char *cli, size_t n)
{
	memset(a, 0, sizeof(*a));
	if (ivsock_agent_connect(agent_name, &a->ac) < 0)
		return false;
	a->s = child(srv, env_with(NULL, NULL), num((long)n), NULL, NULL, NULL, NULL);
	a->port = port_of(srv);
	a->c = child(cli, env_with(NULL, NULL), num(a->port), num((long)n), NULL, NULL, NULL);
	map_whole(&a->ac, &a->rg);
	return true;
}

/* The client's exit code: done is what waitpid() gave while attacking. */
static int attack_client_rc(struct attack *a, pid_t done, int st)
{
	if (done == a->c)
		return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	return reap(a->c, 60);
}

/* A domain member rewrites a channel's resize_to (the ring size ivsockd
 * wants it moved to) with sizes no class has and DEMOTEs it, over and over,
 * while a 256 MiB echo runs: each time both ends go to TCP at their byte
 * offsets and the connector asks for a ring of that "size" (the agent picks
 * a class: docs/layout.md); every byte arrives, in order, once. */
static void hostile_resize_to(void **state)
{
	static const uint32_t junk[] = { 3, 0xffffffffu, 0x80000000u, 1000, 2, IVSOCK_RESIZE_RECLAIM,
					 0x12345 };
	struct attack a;
	char fc[160];
	unsigned moves = 0;
	uint32_t gen;
	pid_t done;
	int ci, st = 0;

	(void)state;
	NEED_AGENT();
	if (!attack_start(&a, "resize-srv", "resize-cli", 256u << 20))
		skip();
	while ((done = waitpid(a.c, &st, WNOHANG)) == 0) {
		ci = find_chan(&a.rg, a.port, &gen);
		if (ci < 0)
			break;
		if (ivsock_chan_resize(&a.rg, (uint32_t)ci, gen, junk[moves % 7], NULL, NULL) == 0)
			moves++;
		usleep(20000);
	}
	assert_int_equal(attack_client_rc(&a, done, st), 0);
	assert_int_equal(reap(a.s, 10), 0);
	out_of(fc, sizeof(fc), "resize-cli");
	print_message("%u moves with junk sizes; client: %ld promotions\n", moves,
		      stat_of(fc, "promoted"));
	assert_true(moves >= 1);
	assert_true(stat_of(fc, "switch_tx_tcp") >= 1);
	ivsock_agent_close(&a.ac);
}

/* A connection on TCP to dport (a TCP entry), or -1 (none now). */
static int find_tcp_entry(struct ivsock_region *rg, int dport, uint32_t *gen)
{
	for (uint32_t i = 0; i < rg->channel_cap; i++) {
		struct ivsock_slot_val v = ivsock_slot_get(&rg->channels[i].slot);

		if (v.state == IVSOCK_CHAN_TCP && rg->channels[i].tuple.dport == dport) {
			*gen = v.gen;
			return (int)i;
		}
	}
	return -1;
}

/*
 * A domain member rewrites the words of a connection's TCP entry that
 * only ivsockd should write: promotion requests nobody asked for (the
 * count bumped, moved back, set to junk) with junk sizes, while the
 * connection is demoted again each time it is on a ring. Every byte
 * arrives (a request costs at most one OPEN of a ring).
 */
static void hostile_promote_req(void **state)
{
	static const uint32_t junk[] = { 3, 0xffffffffu, 0x80000000u, 1000, 0, IVSOCK_RESIZE_RECLAIM,
					 0x12345 };
	struct attack a;
	char fc[160];
	unsigned lies = 0, demotes = 0;
	uint32_t gen;
	pid_t done;
	int ci, st = 0;

	(void)state;
	NEED_AGENT();
	if (!attack_start(&a, "promreq-srv", "promreq-cli", 128u << 20))
		skip();
	while ((done = waitpid(a.c, &st, WNOHANG)) == 0) {
		ci = find_tcp_entry(&a.rg, a.port, &gen);
		if (ci >= 0) {
			struct ivsock_channel *c = &a.rg.channels[ci];

			atomic_store(&c->resize_to, junk[lies % 7]);
			if (lies % 3 == 2)
				atomic_store(&c->promote_req, 0xdeadbeefu ^ lies);
			else
				atomic_fetch_add(&c->promote_req, lies % 3 ? (uint32_t)-1 : 1u);
			lies++;
		} else {
			ci = -1;
			for (uint32_t i = 0; i < a.rg.channel_cap; i++) {
				struct ivsock_slot_val v = ivsock_slot_get(&a.rg.channels[i].slot);

				if (v.state == IVSOCK_CHAN_CONNECTED &&
				    a.rg.channels[i].tuple.dport == a.port) {
					if (ivsock_chan_demote(&a.rg, i, v.gen, NULL, NULL) == 0)
						demotes++;
					break;
				}
			}
		}
		usleep(5000);
	}
	assert_int_equal(attack_client_rc(&a, done, st), 0);
	assert_int_equal(reap(a.s, 10), 0);
	out_of(fc, sizeof(fc), "promreq-cli");
	print_message("%u lies in promote_req, %u demotes; client: %ld promotions, %ld seen\n",
		      lies, demotes, stat_of(fc, "promoted"), stat_of(fc, "promote_operator"));
	assert_true(demotes >= 1 && lies >= 1);
	assert_true(stat_of(fc, "promote_operator") >= 1); /* the lies were seen */
	ivsock_agent_close(&a.ac);
}

/*
 * The acceptor's own ctl words rewritten by `lie` every 200 us while the
 * channel is moved between 32 KiB and 128 KiB rings every 50 ms and the
 * server answers n bytes (the words of an end are its process's to write:
 * a hostile peer can store anything there). @return the client's exit
 * code; *moves and *lies counted.
 */
typedef bool (*word_lie)(struct ivsock_end_ctl *e, unsigned k);

static int lie_in_words(const char *srv, const char *cli, size_t n, word_lie lie,
			unsigned *moves, unsigned *lies)
{
	struct attack a;
	uint64_t last = 0;
	uint32_t gen;
	pid_t done;
	int ci, rc, st = 0;

	*moves = *lies = 0;
	if (!attack_start(&a, srv, cli, n))
		return -1;
	while ((done = waitpid(a.c, &st, WNOHANG)) == 0) {
		struct ivsock_end_ctl *e;
		struct timespec t;
		uint32_t rs = 0;
		uint64_t now;

		ci = find_chan(&a.rg, a.port, &gen);
		if (ci < 0)
			break;
		e = ivsock_chan_end_ctl(&a.rg, (uint32_t)ci, 1, &rs, NULL);
		if (e && lie(e, *lies))
			(*lies)++;
		clock_gettime(CLOCK_MONOTONIC, &t);
		now = (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
		if (now - last >= 50) {
			if (ivsock_chan_resize(&a.rg, (uint32_t)ci, gen, rs == 32768 ? 131072 : 32768,
					       NULL, NULL) == 0)
				(*moves)++;
			last = now;
		}
		usleep(200);
	}
	rc = attack_client_rc(&a, done, st);
	reap(a.s, 10);
	ivsock_agent_close(&a.ac);
	return rc;
}

/* tx_start said to be 0 whenever it says more: the move to a new ring came
 * after no TCP byte, when the server sent more on TCP */
static bool lie_tx_start(struct ivsock_end_ctl *e, unsigned k)
{
	uint64_t ts = ivsock_load_acquire(&e->tx_start);

	(void)k;
	if (!(ts & IVSOCK_START_RING) || !(ts & ~IVSOCK_START_RING))
		return false;
	ivsock_store_release(&e->tx_start, IVSOCK_START_RING);
	return true;
}

/* The acceptor lies in tx_start (docs/switch.md, "TCP -> ring"): each time
 * its stream moves from TCP to a new ring it says the move came after 0
 * TCP bytes when it sent more on TCP. The connector, still reading TCP,
 * finds it has read past that count: a reset, never a byte out of place
 * (the ring's bytes read as if they came after TCP's). */
static void hostile_tx_start(void **state)
{
	unsigned moves, lies;
	char fc[160];
	int rc;

	(void)state;
	NEED_AGENT();
	rc = lie_in_words("tstart-srv", "tstart-cli", 32u << 20, lie_tx_start, &moves, &lies);
	if (rc == -1)
		skip();
	out_of(fc, sizeof(fc), "tstart-cli");
	print_message("%u moves, %u lies in tx_start; client exit %d\n", moves, lies, rc);
	/* complete (no lie landed while it read TCP) or reset; never a wrong byte */
	assert_true(rc == 0 || rc == 30);
	assert_false(file_has(fc, "mismatch"));
}

/* rx_ready flipped between 0, 1 and junk: the connector moves its tx to a
 * ring when the peer "reads it" and stays on TCP while it does not */
static bool lie_rx_ready(struct ivsock_end_ctl *e, unsigned k)
{
	static const uint32_t v[] = { 0, 1, 0xffffffffu, 2, 0x80000000u };

	ivsock_store_release(&e->rx_ready, v[k % 5]);
	return true;
}

/* The acceptor lies in rx_ready (docs/switch.md, "TCP -> ring": its word
 * says when the connector may move its tx to the ring). A false "ready"
 * only moves the connector's bytes to where the liar reads later; a false
 * "not ready" keeps them on TCP. Nothing the connector does depends on the
 * word beyond where it writes next: the stream is complete, or reset by
 * the liar's own confusion, never a wrong byte, never a hang. */
static void hostile_rx_ready(void **state)
{
	unsigned moves, lies;
	char fc[160];
	int rc;

	(void)state;
	NEED_AGENT();
	rc = lie_in_words("tstart-srv", "rxready-cli", 32u << 20, lie_rx_ready, &moves, &lies);
	if (rc == -1)
		skip();
	out_of(fc, sizeof(fc), "rxready-cli");
	print_message("%u moves, %u lies in rx_ready; client exit %d\n", moves, lies, rc);
	assert_true(moves >= 1);
	assert_true(rc == 0 || rc == 30);
	assert_false(file_has(fc, "mismatch"));
}

/* resize_want with sizes no class has, and switch_reason "resize" */
static bool lie_resize_want(struct ivsock_end_ctl *e, unsigned k)
{
	static const uint32_t v[] = { 3, 0xffffffffu, 0x80000000u, 1000, 2, IVSOCK_RESIZE_RECLAIM, 0 };

	ivsock_store_relaxed(&e->switch_reason, IVSOCK_SWITCH_WHY_RESIZE);
	ivsock_store_relaxed(&e->resize_want, v[k % 7]);
	return true;
}

/* The acceptor lies in resize_want (the ring size it wants next when it
 * moves to TCP itself; the connector follows with it): a hint its agent
 * rounds to a class of the domain, like ivsockd's resize_to. Every byte
 * arrives, in order, once. */
static void hostile_resize_want(void **state)
{
	unsigned moves, lies;
	char fc[160];
	int rc;

	(void)state;
	NEED_AGENT();
	rc = lie_in_words("tstart-srv", "rwant-cli", 32u << 20, lie_resize_want, &moves, &lies);
	if (rc == -1)
		skip();
	out_of(fc, sizeof(fc), "rwant-cli");
	print_message("%u moves, %u lies in resize_want; client: %ld promotions\n", moves, lies,
		      stat_of(fc, "promoted"));
	assert_int_equal(rc, 0);
	assert_true(moves >= 1);
	assert_true(stat_of(fc, "promoted") >= 1);
}

/* Finding 3 (shim part): a channel moved to REVOKED under both ends reads as
 * a kernel reset: POLLERR|POLLHUP, ECONNRESET, then EPIPE. */
static void revoked_channel(void **state)
{
	struct ivsock_agent_conn ac;
	struct ivsock_region rg;
	char f[160];
	uint32_t gen;
	pid_t s, c;
	int port, ci;

	(void)state;
	NEED_AGENT();
	memset(&ac, 0, sizeof(ac));
	if (ivsock_agent_connect(agent_name, &ac) < 0)
		skip();
	s = child("revoke-srv", env_with(NULL, NULL), NULL, NULL, NULL, NULL, NULL);
	port = port_of("revoke-srv");
	c = child("revoke-cli", env_with(NULL, NULL), num(port), NULL, NULL, NULL, NULL);
	out_of(f, sizeof(f), "revoke-cli");
	for (int i = 0; i < 500 && !file_has(f, "exchanged"); i++)
		usleep(10000);
	map_whole(&ac, &rg);
	ci = find_chan(&rg, port, &gen);
	assert_true(ci >= 0);
	usleep(200000); /* both ends wait in poll() */
	assert_int_equal(ivsock_slot_move(&rg.channels[ci].slot, gen,
					  IVSOCK_CHAN_CONNECTED, IVSOCK_CHAN_REVOKED), 0);
	assert_int_equal(reap(c, 30), 0);
	assert_int_equal(reap(s, 10), 0);
	assert_int_equal(stat_of(f, "reset_revoked"), 1);
	ivsock_agent_close(&ac);
}

/* Non-blocking sendfile() of a 24 MiB file in an epoll loop, slow reader. */
static void sendfile_nonblocking(void **state)
{
	char file[160], f[160];
	size_t n = 24 << 20;
	uint8_t *b = malloc(n);
	pid_t s, c;
	int fd, port;

	(void)state;
	NEED_AGENT();
	snprintf(file, sizeof(file), "%s/big", dir);
	fill(b, n, 0);
	fd = open(file, O_CREAT | O_WRONLY | O_TRUNC, 0644);
	assert_int_equal(write(fd, b, n), (ssize_t)n);
	close(fd);
	free(b);
	s = child("sendfile-srv", env_with(NULL, NULL), file, num((long)n), NULL, NULL, NULL);
	port = port_of("sendfile-srv");
	c = child("slow-sink", env_with(NULL, NULL), num(port), num((long)n), NULL, NULL, NULL);
	assert_int_equal(reap(c, 120), 0);
	assert_int_equal(reap(s, 10), 0);
	out_of(f, sizeof(f), "slow-sink");
	assert_int_equal(stat_of(f, "accelerated_connect"), 1);
	assert_int_equal(stat_of(f, "ring_rx_bytes"), (long)n);
}

/* Pre-forked workers that cannot reach the agent: each of 10 sequential
 * requests falls back because the acceptor abandoned the offer, none by a
 * timeout. */
static void prefork_no_agent(void **state)
{
	char f[160];
	pid_t s, c;
	int port;

	(void)state;
	NEED_AGENT();
	if (geteuid() != 0)
		skip(); /* the workers must be able to drop to nobody */
	s = child("prefork-srv", env_with(NULL, NULL), num(300000), NULL, NULL, NULL, NULL);
	port = port_of("prefork-srv");
	/* a long attach timeout: only an abandon can end the wait early */
	c = child("requests", env_with("IVSOCK_ATTACH_MS=30000", "IVSOCK_ATTACH_MAX_MS=30000"),
		  num(port), num(10), num(300000), NULL, NULL);
	assert_int_equal(reap(c, 120), 0);
	kill(s, SIGKILL);
	reap(s, 5);
	out_of(f, sizeof(f), "requests");
	/* every local user is served now: the workers that dropped to
	 * nobody are accelerated (they used to be refused and abandon) */
	assert_int_equal(stat_of(f, "accelerated_connect"), 10);
	assert_int_equal(stat_of(f, "fallback_acceptor_abandoned"), 0);
	assert_int_equal(stat_of(f, "fallback_attach_timeout"), 0);
	assert_int_equal(stat_of(f, "fallback_peer_spoke_tcp"), 0);
	assert_int_equal(stat_of(f, "taken_back_bytes"), 0);
}

/* A shimmed server that sleeps before each accept(), 20 concurrent
 * keep-alive clients with a short attach timeout: all stay on the rings. */
static void slow_accept(void **state)
{
	char f[160];
	pid_t s, c;
	int port;

	(void)state;
	NEED_AGENT();
	s = child("slow-accept-srv", env_with(NULL, NULL), num(20), num(60), "-",
		  num(65536), num(3));
	port = port_of("slow-accept-srv");
	c = child("concurrent", env_with("IVSOCK_ATTACH_MS=200", NULL), num(port), num(20), "-",
		  num(65536), num(3));
	assert_int_equal(reap(c, 120), 0);
	assert_int_equal(reap(s, 20), 0);
	out_of(f, sizeof(f), "concurrent");
	assert_int_equal(stat_of(f, "accelerated_connect"), 20);
	assert_int_equal(stat_of(f, "fallback_attach_timeout"), 0);
	assert_int_equal(stat_of(f, "taken_back_bytes"), 0);
	assert_int_equal(stat_of(f, "ring_rx_bytes"), 20L * 3 * 65536);
	out_of(f, sizeof(f), "slow-accept-srv");
	assert_int_equal(stat_of(f, "accelerated_accept"), 20);
}

static int setup(void **state)
{
	char d[PATH_MAX], ctl[128], dom[128], spec[200], bin[PATH_MAX], abin[PATH_MAX];
	char log1[128], log2[128];
	ssize_t n;

	(void)state;
	n = readlink("/proc/self/exe", d, sizeof(d) - 1);
	if (n < 0)
		return -1;
	d[n] = '\0';
	snprintf(self, sizeof(self), "%s", d);
	*strrchr(d, '/') = '\0';
	if ((size_t)snprintf(top, sizeof(top), "%s/../..", d) >= sizeof(top))
		return -1;
	if ((size_t)snprintf(bin, sizeof(bin), "%s/hostd/ivsockd", top) >= sizeof(bin) ||
	    (size_t)snprintf(abin, sizeof(abin), "%s/guestdrv/agent/ivsock-agent", top) >=
		    sizeof(abin))
		return -1;
	if (access(bin, X_OK) || access(abin, X_OK)) {
		fprintf(stderr, "ivsockd/ivsock-agent not built: skipping\n");
		return 0;
	}
	snprintf(dir, sizeof(dir), "/tmp/ivsock-shim-dp.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(ctl, sizeof(ctl), "%s/ctl.sock", dir);
	snprintf(dom, sizeof(dom), "%s/domain.sock", dir);
	/* 64 KiB rings: 20 concurrent connections fit the quota */
	snprintf(spec, sizeof(spec), "unit=%s,size=64M,vectors=4,ring_size=64K", dom);
	snprintf(log1, sizeof(log1), "%s/ivsockd.log", dir);
	snprintf(log2, sizeof(log2), "%s/agent.log", dir);
	snprintf(agent_name, sizeof(agent_name), "@ivsock-dp-%d", (int)getpid());
	{
		char *argv[] = { bin, "--foreground", "--domain", spec, "--control", ctl, NULL };

		daemon_pid = spawn(argv, environ, log1);
	}
	for (int i = 0; i < 300 && access(dom, F_OK); i++)
		usleep(10000);
	{
		char *argv[] = { abin, "--backend", "server", "--server", dom, "--listen",
				 agent_name, "--hostname", "unit", "--foreground", NULL };

		agent_pid = spawn(argv, environ, log2);
	}
	for (int i = 0; i < 300 && !file_has(log2, "registered"); i++)
		usleep(10000);
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	if (agent_pid > 0)
		kill(agent_pid, SIGCONT), kill(agent_pid, SIGTERM), reap(agent_pid, 5);
	if (daemon_pid > 0)
		kill(daemon_pid, SIGTERM), reap(daemon_pid, 5);
	if (dir[0] && !getenv("IVSOCK_TEST_KEEP")) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			return 0;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 2 && !strcmp(argv[1], "--child"))
		return child_main(argc, argv);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(paused_acceptor),
		cmocka_unit_test(paused_acceptor_close),
		cmocka_unit_test(writer_blocking),
		cmocka_unit_test(writer_poll),
		cmocka_unit_test(writer_epoll),
		cmocka_unit_test(scribbled_own_index),
		cmocka_unit_test(revoked_channel),
		cmocka_unit_test(hostile_resize_to),
		cmocka_unit_test(hostile_tx_start),
		cmocka_unit_test(hostile_rx_ready),
		cmocka_unit_test(hostile_resize_want),
		cmocka_unit_test(hostile_promote_req),
		cmocka_unit_test(sendfile_nonblocking),
		cmocka_unit_test(prefork_no_agent),
		cmocka_unit_test(slow_accept),
	};

	if (getenv("IVSOCK_SANITIZER") && strcmp(getenv("IVSOCK_SANITIZER"), "asan")) {
		printf("skipping under %s\n", getenv("IVSOCK_SANITIZER"));
		return 77;
	}
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, setup, teardown);
}
