// SPDX-License-Identifier: MIT
/* shim-users: servers that run their connections as other users, and a
 * client that holds many connections at once, for the shim's tests of
 * admission and per-uid limits (shim-users.sh, shim-admission.sh). The
 * servers echo; the clients (shim-stream, or `hold` below) check every byte.
 * USERS is a comma-separated list of user names or numeric uids (the group
 * is the user's primary group; a numeric uid not in passwd uses gid = uid).
 * Every process that serves prints "shim-users: serve pid=P uid=U gid=G"
 * after dropping privileges (and checks it cannot get root back), and
 * "shim-users: done pid=P uid=U conns=N bytes=B" at the end, so that a test
 * can tie the shim's "ivsock[P] stats:" line (IVSOCK_STATS=1) to a user.
 * A server prints "shim-users: listening PORT" once listen() has returned.
 *
 *   shim-users prefork PORT PER USERS   root: socket, bind, listen; fork one
 *       worker per user of USERS; each worker setgroups/setgid/setuid to
 *       its user, then accepts PER connections one after the other and
 *       echoes each; the parent only waits.
 *   shim-users setuid PORT N USER       root: listen, drop to USER, then
 *       accept N connections one after the other and echo each.
 *   shim-users seccomp PORT N USERS     root: listen, accept N connections;
 *       per connection fork a child that drops to the next user of USERS
 *       (round robin), installs a seccomp filter (SIGSYS on socket,
 *       socketpair, connect, eventfd, eventfd2; EACCES on open, openat,
 *       openat2, creat), checks the filter is on (PR_GET_SECCOMP is 2,
 *       open("/etc/hostname") fails with EACCES), and echoes.
 *   shim-users hold HOST PORT K BYTES READY GO   connect K times (all open at
 *       once), create READY, wait (at most 120 s) until GO exists, then
 *       echo BYTES of a position-addressed pattern through each connection
 *       in turn, checking every byte; "shim-users: hold ok K BYTES".
 * Exit 0 on success; 1 with a message otherwise (a server: if any worker
 * or child failed, was killed, or served less than it should). */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <pwd.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define MAX_USERS 16

#if defined(__x86_64__)
#define ARCH_NR AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define ARCH_NR AUDIT_ARCH_AARCH64
#elif defined(__i386__)
#define ARCH_NR AUDIT_ARCH_I386
#endif

struct user { uid_t uid; gid_t gid; };

static void fail(const char *what)
{
	dprintf(1, "shim-users: FAIL [pid %d]: %s: %s\n", (int)getpid(), what, strerror(errno));
	dprintf(2, "shim-users: FAIL [pid %d]: %s: %s\n", (int)getpid(), what, strerror(errno));
	exit(1);
}

static int parse_users(const char *list, struct user *u)
{
	char *copy = strdup(list), *save = NULL, *tok;
	int n = 0;

	if (!copy)
		fail("strdup");
	for (tok = strtok_r(copy, ",", &save); tok && n < MAX_USERS;
	     tok = strtok_r(NULL, ",", &save)) {
		struct passwd *p = getpwnam(tok);
		char *end;
		unsigned long id;

		if (!p) {
			errno = 0;
			id = strtoul(tok, &end, 10);
			if (*end || errno) {
				errno = ENOENT;
				fail(tok);
			}
			p = getpwuid((uid_t)id);
			u[n].uid = (uid_t)id;
			u[n].gid = p ? p->pw_gid : (gid_t)id;
		} else {
			u[n].uid = p->pw_uid;
			u[n].gid = p->pw_gid;
		}
		if (u[n].uid == 0) {
			errno = EINVAL;
			fail("a user to drop to must not be root");
		}
		n++;
	}
	free(copy);
	if (!n) {
		errno = EINVAL;
		fail("no users");
	}
	return n;
}

/* Become u for good: no supplementary groups, real/effective/saved ids. */
static void drop_to(const struct user *u)
{
	if (setgroups(0, NULL) < 0 || setgid(u->gid) < 0 || setuid(u->uid) < 0)
		fail("drop privileges");
	if (getuid() != u->uid || geteuid() != u->uid || getgid() != u->gid)
		fail("ids after setuid");
	if (setuid(0) == 0) {
		errno = EPERM;
		fail("got root back after dropping it");
	}
	/* setuid() cleared it: a worker must not outlive the test */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	dprintf(1, "shim-users: serve pid=%d uid=%u gid=%u\n", (int)getpid(),
		(unsigned)getuid(), (unsigned)getgid());
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

/* Echo until EOF. @return the bytes echoed. */
static uint64_t echo(int c)
{
	static uint8_t buf[65536];
	uint64_t total = 0;

	for (;;) {
		ssize_t n = read(c, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			fail("server read");
		if (n == 0)
			break;
		if (write_all(c, buf, (size_t)n) < 0)
			fail("server write");
		total += (uint64_t)n;
	}
	close(c);
	return total;
}

static int accept_one(int l)
{
	for (;;) {
		int c = accept(l, NULL, NULL);

		if (c >= 0)
			return c;
		if (errno != EINTR)
			fail("accept");
	}
}

static void done(int conns, uint64_t bytes)
{
	dprintf(1, "shim-users: done pid=%d uid=%u conns=%d bytes=%llu\n", (int)getpid(),
		(unsigned)getuid(), conns, (unsigned long long)bytes);
}

static int listen_on(const char *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port)) };
	int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);

	if (l < 0)
		fail("socket");
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 64) < 0)
		fail("listen");
	/* listen() returned: the shim has registered the listener */
	dprintf(1, "shim-users: listening %s\n", port);
	return l;
}

#define KILL_ON(nr) \
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), \
	BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS)
#define EACCES_ON(nr) \
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), \
	BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EACCES)

static void sandbox(void)
{
	struct sock_filter f[] = {
#ifdef ARCH_NR
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ARCH_NR, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
#endif
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		KILL_ON(SYS_socket),
		KILL_ON(SYS_socketpair),
		KILL_ON(SYS_connect),
		KILL_ON(SYS_eventfd2),
#ifdef SYS_eventfd
		KILL_ON(SYS_eventfd),
#endif
#ifdef SYS_open
		EACCES_ON(SYS_open),
#endif
#ifdef SYS_creat
		EACCES_ON(SYS_creat),
#endif
		EACCES_ON(SYS_openat),
		EACCES_ON(437 /* openat2 */),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };
	int fd;

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
		fail("seccomp");
	if (prctl(PR_GET_SECCOMP, 0, 0, 0, 0) != 2) {
		errno = EINVAL;
		fail("the filter is not on");
	}
	fd = open("/etc/hostname", O_RDONLY);
	if (fd >= 0 || errno != EACCES) {
		errno = EINVAL;
		fail("open() of a new file is not forbidden");
	}
	dprintf(1, "shim-users: sandboxed pid=%d\n", (int)getpid());
}

static int reap(int n)
{
	int bad = 0, st;

	for (int i = 0; i < n; i++) {
		pid_t p = wait(&st);

		if (p < 0)
			fail("wait");
		if (WIFSIGNALED(st)) {
			dprintf(1, "shim-users: FAIL: child %d killed by signal %d%s\n", (int)p,
				WTERMSIG(st), WTERMSIG(st) == SIGSYS ?
				" (SIGSYS: the sandbox caught a system call)" : "");
			bad = 1;
		} else if (WEXITSTATUS(st)) {
			dprintf(1, "shim-users: FAIL: child %d exit %d\n", (int)p, WEXITSTATUS(st));
			bad = 1;
		}
	}
	return bad;
}

static int prefork(const char *port, int per, const char *users)
{
	struct user u[MAX_USERS];
	int n = parse_users(users, u), l = listen_on(port);
	pid_t parent = getpid();

	for (int i = 0; i < n; i++) {
		pid_t p = fork();

		if (p < 0)
			fail("fork");
		if (p == 0) {
			uint64_t bytes = 0;

			drop_to(&u[i]);
			if (getppid() != parent)
				exit(1);
			for (int k = 0; k < per; k++)
				bytes += echo(accept_one(l));
			done(per, bytes);
			exit(0);
		}
	}
	close(l);
	if (reap(n))
		return 1;
	dprintf(1, "shim-users: ok\n");
	return 0;
}

static int setuid_server(const char *port, int n, const char *user)
{
	struct user u;
	uint64_t bytes = 0;
	int l;

	parse_users(user, &u);
	l = listen_on(port);
	drop_to(&u);
	for (int k = 0; k < n; k++)
		bytes += echo(accept_one(l));
	close(l);
	done(n, bytes);
	dprintf(1, "shim-users: ok\n");
	return 0;
}

static int seccomp_server(const char *port, int n, const char *users)
{
	struct user u[MAX_USERS];
	int nu = parse_users(users, u), l = listen_on(port);

	for (int k = 0; k < n; k++) {
		int c = accept_one(l);
		pid_t p = fork();

		if (p < 0)
			fail("fork");
		if (p == 0) {
			uint64_t bytes;

			close(l);
			drop_to(&u[k % nu]);
			sandbox();
			bytes = echo(c);
			done(1, bytes);
			exit(0);
		}
		close(c);
	}
	close(l);
	if (reap(n))
		return 1;
	dprintf(1, "shim-users: ok\n");
	return 0;
}

/* ---- hold: K connections at once ---- */

static uint8_t pat(uint64_t i)
{
	uint64_t x = (i / 8 + 29) * 0x9e3779b97f4a7c15ULL;

	x ^= x >> 31;
	return (uint8_t)(x >> (8 * (i % 8)));
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
	if (shutdown(s, SHUT_WR) < 0)
		fail("shutdown");
	if (read(s, in, sizeof(in)) != 0) {
		errno = EILSEQ;
		fail("bytes after the echo");
	}
}

static int hold(const char *host, const char *port, int k, uint64_t bytes, const char *ready,
		const char *go)
{
	int *fds = calloc((size_t)k, sizeof(int)), fd;
	struct stat st;

	if (!fds)
		fail("calloc");
	for (int i = 0; i < k; i++)
		fds[i] = dial(host, port);
	/* one byte there and back on each: every connection is accepted and
	 * attached (or on TCP) before we say ready */
	for (int i = 0; i < k; i++) {
		uint8_t b = (uint8_t)i, r = 0;

		if (write_all(fds[i], &b, 1) < 0 || read(fds[i], &r, 1) != 1 || r != b)
			fail("first byte");
	}
	fd = open(ready, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		fail("ready file");
	dprintf(fd, "%d\n", (int)getpid());
	close(fd);
	for (int t = 0; stat(go, &st) < 0; t++) {
		if (t > 12000) {
			errno = ETIMEDOUT;
			fail("waiting for the go file");
		}
		usleep(10000);
	}
	for (int i = 0; i < k; i++) {
		stream(fds[i], bytes);
		close(fds[i]);
	}
	free(fds);
	dprintf(1, "shim-users: hold ok %d %llu uid=%u\n", k, (unsigned long long)bytes,
		(unsigned)getuid());
	return 0;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc == 5 && !strcmp(argv[1], "prefork"))
		return prefork(argv[2], atoi(argv[3]), argv[4]);
	if (argc == 5 && !strcmp(argv[1], "setuid"))
		return setuid_server(argv[2], atoi(argv[3]), argv[4]);
	if (argc == 5 && !strcmp(argv[1], "seccomp"))
		return seccomp_server(argv[2], atoi(argv[3]), argv[4]);
	if (argc == 8 && !strcmp(argv[1], "hold"))
		return hold(argv[2], argv[3], atoi(argv[4]), strtoull(argv[5], NULL, 0), argv[6],
			    argv[7]);
	fprintf(stderr, "usage: see the comment at the top of shim_users.c\n");
	return 2;
}
