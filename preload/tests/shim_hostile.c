// SPDX-License-Identifier: MIT
/* shim-hostile: programs that are rough with file descriptors, sandbox
 * themselves or drop privileges, for the shim's tests (shim-fds.sh,
 * shim-sandbox.sh, shim-privdrop.sh). Every data exchange is an echo of a
 * position-addressed pattern, checked byte for byte.
 *
 *   shim-hostile client-closefrom|client-closerange|client-dup2 HOST PORT BYTES FILE
 *       close every fd above 2 (or dup2 a file over every fd the program
 *       did not open), then write a known text to FILE and stream BYTES
 *       through an echo server; FILE must hold exactly the text.
 *   shim-hostile server-seccomp PORT N    accept, fork; the child installs a
 *       seccomp filter killing socket/socketpair/open/openat/openat2/connect/
 *       eventfd/eventfd2 and echoes (server-seccomp-poll: waiting in poll())
 *   shim-hostile server-setuid PORT N UID  listen, setuid(UID), echo N conns
 *   shim-hostile server-prefork PORT N UID N workers fork, setuid(UID), each
 *       accepts one connection and echoes it
 *   shim-hostile fdcheck DIR   (no agent needed; IVSOCK_LOG=debug and
 *       IVSOCK_LOG_FILE=DIR/shim.log): the shim's log fd looks never opened
 *       (close/dup/fcntl: EBADF), survives closefrom(3) and close_range(),
 *       moves away when the program dup2()s onto its number, and is dropped
 *       unwritten when a raw dup2 syscall replaces it; the program's files
 *       DIR/a, DIR/b, DIR/c hold only what it wrote.
 * Exit 0 on success; 1 with a message otherwise. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <poll.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static uint8_t pat(uint64_t i)
{
	uint64_t x = (i / 8 + 17) * 0x9e3779b97f4a7c15ULL;

	x ^= x >> 31;
	return (uint8_t)(x >> (8 * (i % 8)));
}

static void fail(const char *what)
{
	/* stderr may be gone: say it on fd 1 too */
	dprintf(1, "shim-hostile: FAIL: %s: %s\n", what, strerror(errno));
	dprintf(2, "shim-hostile: FAIL: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int write_all(int fd, const void *b, size_t n)
{
	const uint8_t *p = b;

	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Send bytes of the pattern and read the echo back, interleaved. */
static void stream(int s, uint64_t bytes)
{
	static uint8_t out[32768], in[65536];
	uint64_t sent = 0, got = 0;

	while (got < bytes) {
		if (sent < bytes && sent - got < 65536) {
			size_t n = bytes - sent < sizeof(out) ? (size_t)(bytes - sent) : sizeof(out);

			for (size_t i = 0; i < n; i++)
				out[i] = pat(sent + i);
			if (write_all(s, out, n) < 0)
				fail("send");
			sent += n;
		}
		ssize_t r = read(s, in, sizeof(in));

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			fail(r == 0 ? "early EOF" : "recv");
		for (ssize_t i = 0; i < r; i++)
			if (in[i] != pat(got + (uint64_t)i)) {
				errno = EILSEQ;
				dprintf(1, "byte %llu differs\n", (unsigned long long)(got + (uint64_t)i));
				fail("echo");
			}
		got += (uint64_t)r;
	}
}

static int dial(const char *host, const char *port)
{
	struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *ai;
	int s;

	if (getaddrinfo(host, port, &hints, &ai))
		fail("getaddrinfo");
	s = socket(AF_INET, SOCK_STREAM, 0);
	if (s < 0 || connect(s, ai->ai_addr, ai->ai_addrlen) < 0)
		fail("connect");
	freeaddrinfo(ai);
	return s;
}

/* fds >= 3 open now (the program opened none: they are the shim's). */
static int list_fds(int *fds, int max)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		fail("opendir");
	while ((e = readdir(d)) && n < max) {
		int fd = atoi(e->d_name);

		if (e->d_name[0] >= '0' && e->d_name[0] <= '9' && fd > 2 && fd != dirfd(d))
			fds[n++] = fd;
	}
	closedir(d);
	return n;
}

static const char text[] = "the program's own file, nothing else\n";

static int client(const char *mode, const char *host, const char *port, uint64_t bytes,
		  const char *file)
{
	int shim[256], n, fd, s, s2;
	char buf[4096];
	ssize_t r;

	n = list_fds(shim, 256);
	dprintf(1, "shim-hostile: %d fd(s) above 2 at start\n", n);
	if (!strcmp(mode, "client-closefrom")) {
		closefrom(3);
	} else if (!strcmp(mode, "client-closerange")) {
		if (close_range(3, ~0U, 0) < 0)
			fail("close_range");
	} else {
		/* dup2 a file of ours over every number the shim holds */
		int junk = open("/dev/null", O_RDONLY);

		if (junk < 0)
			fail("open /dev/null");
		for (int i = 0; i < n; i++)
			if (shim[i] != junk && dup2(junk, shim[i]) != shim[i])
				fail("dup2 over a shim fd");
		close(junk);
	}
	/* what the program sees matches the kernel without the shim */
	if (strcmp(mode, "client-dup2")) {
		for (int i = 0; i < n; i++) {
			errno = 0;
			if (fcntl(shim[i], F_GETFD) != -1 || errno != EBADF)
				fail("a closed number still answers fcntl");
			if (close(shim[i]) != -1 || errno != EBADF)
				fail("a closed number closes again");
		}
	}
	fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		fail("open FILE");
	s = dial(host, port);
	stream(s, bytes);
	/* a second connection after more churn on fd numbers */
	s2 = dial(host, port);
	if (write_all(fd, text, sizeof(text) - 1) < 0)
		fail("write FILE");
	stream(s2, bytes / 4 + 1);
	shutdown(s, SHUT_WR);
	shutdown(s2, SHUT_WR);
	if (read(s, buf, sizeof(buf)) != 0 || read(s2, buf, sizeof(buf)) != 0)
		fail("extra bytes in a socket");
	close(s);
	close(s2);
	close(fd);
	fd = open(file, O_RDONLY);
	r = read(fd, buf, sizeof(buf));
	if (r != (ssize_t)sizeof(text) - 1 || memcmp(buf, text, sizeof(text) - 1)) {
		errno = EILSEQ;
		fail("FILE does not hold exactly what the program wrote");
	}
	close(fd);
	dprintf(1, "shim-hostile: ok\n");
	return 0;
}

/* Make the shim log a debug line (connect: no agent, stays on TCP). */
static void provoke_log(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(9),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int s = socket(AF_INET, SOCK_STREAM, 0);

	if (s < 0)
		fail("socket");
	connect(s, (struct sockaddr *)&a, sizeof(a)); /* refused: fine */
	close(s);
}

static size_t count_in(const char *file, const char *needle)
{
	char buf[65536];
	size_t k = 0;
	int fd = open(file, O_RDONLY);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

	if (fd >= 0)
		close(fd);
	if (n < 0)
		return 0;
	buf[n] = '\0';
	for (char *p = buf; (p = strstr(p, needle)); p++)
		k++;
	return k;
}

static void expect_only_text(const char *file, size_t times)
{
	char buf[4096];
	int fd = open(file, O_RDONLY);
	ssize_t n = read(fd, buf, sizeof(buf));

	close(fd);
	if (n != (ssize_t)(times * (sizeof(text) - 1)) || (times && memcmp(buf, text, sizeof(text) - 1))) {
		errno = EILSEQ;
		dprintf(1, "%s: %zd bytes\n", file, n);
		fail("a program file holds something it did not write");
	}
}

static int fdcheck(const char *dir)
{
	char log[512], fa[512], fb[512], fc[512];
	int shim[16], n, logfd, a, b, c;
	size_t lines;

	snprintf(log, sizeof(log), "%s/shim.log", dir);
	snprintf(fa, sizeof(fa), "%s/a", dir);
	snprintf(fb, sizeof(fb), "%s/b", dir);
	snprintf(fc, sizeof(fc), "%s/c", dir);
	provoke_log();
	lines = count_in(log, "ivsock[");
	if (!lines)
		fail("the shim logged nothing (is IVSOCK_LOG_FILE set?)");
	/* without an agent the shim holds one fd: the log */
	n = list_fds(shim, 16);
	logfd = -1;
	for (int i = 0; i < n; i++) {
		char p[64], l[512];
		ssize_t k;

		snprintf(p, sizeof(p), "/proc/self/fd/%d", shim[i]);
		k = readlink(p, l, sizeof(l) - 1);
		if (k > 0 && (l[k] = '\0', !strcmp(l, log)))
			logfd = shim[i];
	}
	if (logfd < 100) {
		errno = ERANGE;
		fail("the shim's log fd is missing or not high");
	}
	n = 1;
	shim[0] = logfd;
	for (int i = 0; i < n; i++) {
		errno = 0;
		if (close(shim[i]) != -1 || errno != EBADF)
			fail("close() of a shim fd did not say EBADF");
		if (dup(shim[i]) != -1 || fcntl(shim[i], F_GETFD) != -1 || errno != EBADF)
			fail("dup()/fcntl() of a shim fd did not say EBADF");
	}
	closefrom(3);
	provoke_log();
	if (count_in(log, "ivsock[") <= lines)
		fail("the shim's log did not survive closefrom(3)");
	lines = count_in(log, "ivsock[");
	if (close_range(3, ~0U, 0) < 0)
		fail("close_range");
	provoke_log();
	if (count_in(log, "ivsock[") <= lines)
		fail("the shim's log did not survive close_range()");
	lines = count_in(log, "ivsock[");
	/* the program takes the log fd's number: it gets it, the log moves */
	a = open(fa, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (a < 0 || dup2(a, logfd) != logfd)
		fail("dup2 onto the shim's log fd");
	close(a);
	if (write(logfd, text, sizeof(text) - 1) != sizeof(text) - 1)
		fail("write to the number the program took");
	provoke_log();
	expect_only_text(fa, 1);
	if (count_in(log, "ivsock[") <= lines)
		fail("the shim's log did not move out of the way");
	lines = count_in(log, "ivsock[");
	/* where the log went: the one fd above 2 that is not logfd */
	n = list_fds(shim, 16);
	c = -1;
	for (int i = 0; i < n; i++)
		if (shim[i] != logfd)
			c = shim[i];
	if (c < 100) {
		errno = ERANGE;
		fail("the shim's log fd did not move high");
	}
	/* F_DUPFD from its number: the program gets that number */
	b = fcntl(0, F_DUPFD, c);
	if (b != c) {
		dprintf(1, "F_DUPFD(%d) gave %d\n", c, b);
		errno = ERANGE;
		fail("F_DUPFD skipped a shim fd");
	}
	close(b);
	provoke_log();
	if (count_in(log, "ivsock[") <= lines)
		fail("the shim's log did not move out of F_DUPFD's way");
	/* a raw dup2 (no libc) over the log fd's new number: never written */
	n = list_fds(shim, 16);
	b = open(fb, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	for (int i = 0; i < n; i++)
		if (shim[i] != logfd && shim[i] != b && syscall(SYS_dup2, b, shim[i]) < 0)
			fail("raw dup2");
	close(b);
	provoke_log();
	provoke_log();
	expect_only_text(fb, 0);
	/* and the program's file at a fresh low number is never written */
	c = open(fc, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (write(c, text, sizeof(text) - 1) != sizeof(text) - 1)
		fail("write c");
	provoke_log();
	close(c);
	expect_only_text(fc, 1);
	expect_only_text(fa, 1);
	dprintf(1, "shim-hostile: ok\n");
	return 0;
}

/* ---- servers ---- */

static int opt_poll; /* wait in poll() before each read (the multiplexer) */

static void echo(int c)
{
	static uint8_t buf[65536];

	for (;;) {
		ssize_t n;

		if (opt_poll) {
			struct pollfd p = { .fd = c, .events = POLLIN };

			if (poll(&p, 1, 30000) < 0 && errno != EINTR)
				fail("poll");
		}
		n = read(c, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			fail("server read");
		if (n == 0)
			break;
		if (write_all(c, buf, (size_t)n) < 0)
			fail("server write");
	}
	close(c);
}

static int listen_on(const char *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port)) };
	int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);

	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 64) < 0)
		fail("listen");
	return l;
}

static void sandbox(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_socket, 8, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_socketpair, 7, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_open, 6, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_openat, 5, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_connect, 4, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 437 /* openat2 */, 3, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_eventfd2, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_eventfd, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
		fail("seccomp");
}

static int reap(int n)
{
	int bad = 0, st;

	for (int i = 0; i < n; i++) {
		if (wait(&st) < 0)
			fail("wait");
		if (WIFSIGNALED(st)) {
			dprintf(1, "shim-hostile: FAIL: child killed by signal %d%s\n", WTERMSIG(st),
				WTERMSIG(st) == SIGSYS ? " (SIGSYS: the sandbox caught a system call)" : "");
			bad = 1;
		} else if (WEXITSTATUS(st)) {
			dprintf(1, "shim-hostile: FAIL: child exit %d\n", WEXITSTATUS(st));
			bad = 1;
		}
	}
	return bad;
}

static int server(const char *mode, const char *port, int n, uid_t uid)
{
	int l = listen_on(port), bad;

	if (!strcmp(mode, "server-seccomp-poll")) {
		opt_poll = 1;
		mode = "server-seccomp";
	}
	if (!strcmp(mode, "server-seccomp")) {
		for (int i = 0; i < n; i++) {
			int c = accept(l, NULL, NULL);
			pid_t p;

			if (c < 0)
				fail("accept");
			p = fork();
			if (p < 0)
				fail("fork");
			if (p == 0) {
				close(l);
				sandbox();
				echo(c);
				exit(0);
			}
			close(c);
		}
		bad = reap(n);
	} else if (!strcmp(mode, "server-setuid")) {
		if (setgid(uid) < 0 || setuid(uid) < 0)
			fail("setuid");
		for (int i = 0; i < n; i++) {
			int c = accept(l, NULL, NULL);

			if (c < 0)
				fail("accept");
			echo(c);
		}
		bad = 0;
	} else {
		for (int i = 0; i < n; i++) {
			pid_t p = fork();

			if (p < 0)
				fail("fork");
			if (p == 0) {
				int c;

				if (setgid(uid) < 0 || setuid(uid) < 0)
					fail("setuid");
				c = accept(l, NULL, NULL);
				if (c < 0)
					fail("accept");
				echo(c);
				exit(0);
			}
		}
		bad = reap(n);
	}
	close(l);
	if (!bad)
		dprintf(1, "shim-hostile: ok\n");
	return bad;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "fdcheck"))
		return fdcheck(argv[2]);
	if (argc == 6 && !strncmp(argv[1], "client-", 7))
		return client(argv[1], argv[2], argv[3], strtoull(argv[4], NULL, 0), argv[5]);
	if (argc >= 4 && !strncmp(argv[1], "server-", 7))
		return server(argv[1], argv[2], atoi(argv[3]),
			      argc > 4 ? (uid_t)atoi(argv[4]) : 65534);
	fprintf(stderr, "usage: see the comment at the top of shim_hostile.c\n");
	return 2;
}
