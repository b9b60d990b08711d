// SPDX-License-Identifier: MIT
// Harness of the conformance programs (see conf.h): main(), transcript
// printing, connect/accept helpers and the verified PRNG byte stream.
#include "conf.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

struct conf cf;

void tp(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n, e = errno;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (write(STDOUT_FILENO, line, n) < 0)
		_exit(3);
	errno = e;
}

const char *errname(int e)
{
	const char *s = strerrorname_np(e);
	return s ? s : "E?";
}

long tr(const char *what, long ret)
{
	int e = errno;

	if (ret < 0)
		tp("%s = %ld %s", what, ret, errname(e));
	else
		tp("%s = %ld", what, ret);
	errno = e;
	return ret;
}

void fail_at(const char *file, int line, const char *msg)
{
	int e = errno;

	tp("FAIL %s:%d: %s (errno %s)", file, line, msg, errname(e));
	fprintf(stderr, "FAIL %s:%d: %s (errno %s)\n", file, line, msg, errname(e));
	_exit(1);
}

static const char *flagnames(unsigned v, const unsigned *bits, const char *const *names, int n)
{
	static __thread char buf[256];
	size_t len = 0;

	buf[0] = 0;
	for (int i = 0; i < n; i++) {
		if (!(v & bits[i]))
			continue;
		len += snprintf(buf + len, sizeof(buf) - len, "%s%s", len ? "|" : "", names[i]);
		v &= ~bits[i];
	}
	if (v)
		len += snprintf(buf + len, sizeof(buf) - len, "%s0x%x", len ? "|" : "", v);
	if (!len)
		snprintf(buf, sizeof(buf), "0");
	return buf;
}

const char *pollname(unsigned r)
{
	static const unsigned b[] = { POLLIN, POLLPRI, POLLOUT, POLLRDHUP, POLLERR, POLLHUP, POLLNVAL,
				      POLLRDNORM, POLLWRNORM, POLLRDBAND, POLLWRBAND };
	static const char *const n[] = { "POLLIN", "POLLPRI", "POLLOUT", "POLLRDHUP", "POLLERR",
					 "POLLHUP", "POLLNVAL", "POLLRDNORM", "POLLWRNORM",
					 "POLLRDBAND", "POLLWRBAND" };
	return flagnames(r, b, n, sizeof(b) / sizeof(b[0]));
}

const char *epollname(unsigned r)
{
	static const unsigned b[] = { EPOLLIN, EPOLLPRI, EPOLLOUT, EPOLLRDHUP, EPOLLERR, EPOLLHUP,
				      EPOLLRDNORM, EPOLLWRNORM, EPOLLRDBAND, EPOLLWRBAND };
	static const char *const n[] = { "EPOLLIN", "EPOLLPRI", "EPOLLOUT", "EPOLLRDHUP", "EPOLLERR",
					 "EPOLLHUP", "EPOLLRDNORM", "EPOLLWRNORM", "EPOLLRDBAND",
					 "EPOLLWRBAND" };
	return flagnames(r, b, n, sizeof(b) / sizeof(b[0]));
}

int conf_connect(void)
{
	struct timespec ts = { 0, 50 * 1000 * 1000 };

	for (int i = 0; i < 400; i++) {
		int fd = socket(cf.family, SOCK_STREAM, 0);

		if (fd < 0)
			FAIL("socket");
		if (connect(fd, (struct sockaddr *)&cf.sa, cf.salen) == 0)
			return fd;
		if (errno != ECONNREFUSED && errno != EHOSTUNREACH && errno != ENETUNREACH &&
		    errno != EADDRNOTAVAIL)
			FAIL("connect");
		close(fd);
		nanosleep(&ts, NULL);
	}
	FAIL("connect: server never came up");
}

int conf_accept(int lfd)
{
	int fd;

	do
		fd = accept(lfd, NULL, NULL);
	while (fd < 0 && errno == EINTR);
	if (fd < 0)
		FAIL("accept");
	return fd;
}

/* splitmix64 of the 8-byte block index: byte i = block(i/8) >> 8*(i%8). */
static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static uint8_t sbyte(uint32_t seed, uint64_t i, uint64_t *blk, uint64_t *val)
{
	uint64_t b = i >> 3;

	if (b != *blk) {
		*blk = b;
		*val = mix(b ^ ((uint64_t)seed << 40));
	}
	return (uint8_t)(*val >> (8 * (i & 7)));
}

void stream_fill(uint32_t seed, uint64_t off, void *buf, size_t n)
{
	uint64_t blk = UINT64_MAX, val = 0;
	uint8_t *p = buf;

	for (size_t i = 0; i < n; i++)
		p[i] = sbyte(seed, off + i, &blk, &val);
}

int64_t stream_check(uint32_t seed, uint64_t off, const void *buf, size_t n)
{
	uint64_t blk = UINT64_MAX, val = 0;
	const uint8_t *p = buf;

	for (size_t i = 0; i < n; i++)
		if (p[i] != sbyte(seed, off + i, &blk, &val))
			return (int64_t)(off + i);
	return -1;
}

void verify(uint32_t seed, uint64_t *off, const void *buf, size_t n)
{
	int64_t bad = stream_check(seed, *off, buf, n);

	if (bad >= 0) {
		tp("MISMATCH stream %#x at offset %lld", seed, (long long)bad);
		FAIL("stream mismatch");
	}
	*off += n;
}

void write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;

	while (n) {
		ssize_t r = write(fd, p, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			FAIL("write_all");
		p += r;
		n -= r;
	}
}

void read_all(int fd, void *buf, size_t n)
{
	char *p = buf;

	while (n) {
		ssize_t r = read(fd, p, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			FAIL("read_all");
		if (r == 0)
			FAIL("read_all: early EOF");
		p += r;
		n -= r;
	}
}

void send_stream(int fd, uint32_t seed, uint64_t *off, uint64_t n, size_t chunk)
{
	char *buf = malloc(chunk);

	if (!buf)
		FAIL("malloc");
	while (n) {
		size_t k = n < chunk ? n : chunk;

		stream_fill(seed, *off, buf, k);
		write_all(fd, buf, k);
		*off += k;
		n -= k;
	}
	free(buf);
}

void recv_stream(int fd, uint32_t seed, uint64_t *off, uint64_t n, size_t chunk)
{
	char *buf = malloc(chunk);

	if (!buf)
		FAIL("malloc");
	while (n) {
		size_t k = n < chunk ? n : chunk;
		ssize_t r = read(fd, buf, k);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			FAIL("recv_stream: read");
		if (r == 0)
			FAIL("recv_stream: early EOF");
		verify(seed, off, buf, r);
		n -= r;
	}
	free(buf);
}

void tok_send(int fd, char c)
{
	if (send(fd, &c, 1, MSG_NOSIGNAL) != 1)
		FAIL("tok_send");
}

void tok_recv(int fd, char want)
{
	char c;
	ssize_t r;

	do
		r = read(fd, &c, 1);
	while (r < 0 && errno == EINTR);
	if (r != 1)
		FAIL("tok_recv");
	if (c != want) {
		tp("token '%c' instead of '%c'", c, want);
		FAIL("tok_recv: wrong token");
	}
}

long wait_eof(int fd)
{
	char b[4096];
	ssize_t r;

	do
		r = read(fd, b, sizeof(b));
	while (r > 0 || (r < 0 && errno == EINTR));
	return r;
}

static int listen_on(void)
{
	int one = 1, fd = socket(cf.family, SOCK_STREAM, 0);

	if (fd < 0)
		FAIL("socket");
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		FAIL("SO_REUSEADDR");
	if (cf.family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
		FAIL("IPV6_V6ONLY");
	if (bind(fd, (struct sockaddr *)&cf.sa, cf.salen) < 0)
		FAIL("bind");
	if (listen(fd, 64) < 0)
		FAIL("listen");
	/* Tell the runner listen() has returned (CONF_READY_FILE, optional). */
	if (getenv("CONF_READY_FILE")) {
		int r = open(getenv("CONF_READY_FILE"), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);

		if (r >= 0)
			close(r);
	}
	return fd;
}

int main(int argc, char **argv)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)&cf.sa;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&cf.sa;
	int rc;

	if (argc != 4 || (strcmp(argv[1], "server") && strcmp(argv[1], "client"))) {
		fprintf(stderr, "usage: %s server|client ADDR PORT\n"
				"  server: listen on ADDR:PORT; client: connect to it\n", argv[0]);
		return 2;
	}
	cf.server = !strcmp(argv[1], "server");
	cf.addr = argv[2];
	cf.port = atoi(argv[3]);
	memset(&cf.sa, 0, sizeof(cf.sa));
	if (inet_pton(AF_INET, cf.addr, &s4->sin_addr) == 1) {
		cf.family = s4->sin_family = AF_INET;
		s4->sin_port = htons(cf.port);
		cf.salen = sizeof(*s4);
	} else if (inet_pton(AF_INET6, cf.addr, &s6->sin6_addr) == 1) {
		cf.family = s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(cf.port);
		cf.salen = sizeof(*s6);
	} else {
		fprintf(stderr, "bad address %s\n", cf.addr);
		return 2;
	}
	signal(SIGPIPE, SIG_DFL);
	rc = cf.server ? case_server(listen_on()) : case_client();
	tp("%s done rc=%d", cf.server ? "server" : "client", rc);
	return rc;
}
