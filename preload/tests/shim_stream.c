// SPDX-License-Identifier: MIT
/* shim-stream: a small TCP client/server for the shim's tests. The client
 * sends a position-addressable byte pattern (writer thread) while reading
 * the server's echo back (reader thread) and checks every byte; modes for
 * server-speaks-first, accept-then-fork, connect/close cycles. */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/wait.h>

static uint8_t pat(uint64_t i)
{
	uint64_t x = i / 8 * 0x9e3779b97f4a7c15ULL;

	x ^= x >> 29;
	return (uint8_t)(x >> (8 * (i % 8)));
}

static void die(const char *what)
{
	fprintf(stderr, "shim-stream: %s: %s\n", what, strerror(errno));
	exit(2);
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

static const char *banner = "HELLO-SHIM\n";
static int opt_speak_first, opt_fork, opt_chunk = 16384, opt_accept_delay_ms, opt_pace_us;
static int opt_linger_ms; /* the client keeps its connection this long after the echo */

/* Server: echo everything until EOF (optionally banner first). */
static void serve(int c)
{
	static __thread uint8_t buf[1 << 16];
	ssize_t n;

	if (opt_speak_first && write_all(c, banner, strlen(banner)) < 0)
		die("banner");
	for (;;) {
		n = read(c, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "shim-stream: server read: %s\n", strerror(errno));
			break;
		}
		if (n == 0)
			break;
		if (write_all(c, buf, (size_t)n) < 0) {
			fprintf(stderr, "shim-stream: server write: %s\n", strerror(errno));
			break;
		}
	}
	close(c);
}

static _Atomic int active;

static void *serve_thread(void *arg)
{
	serve((int)(intptr_t)arg);
	active--;
	return NULL;
}

static int server(const char *port, long count)
{
	struct addrinfo hints = { .ai_family = AF_INET6, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE }, *ai;
	int l, one = 1, zero = 0;

	if (getaddrinfo(NULL, port, &hints, &ai))
		die("getaddrinfo");
	l = socket(ai->ai_family, SOCK_STREAM, 0);
	if (l < 0)
		die("socket");
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(l, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(l, ai->ai_addr, ai->ai_addrlen) < 0)
		die("bind");
	if (listen(l, 512) < 0)
		die("listen");
	freeaddrinfo(ai);
	{
		struct sockaddr_in6 me;
		socklen_t ml = sizeof(me);

		if (getsockname(l, (struct sockaddr *)&me, &ml) < 0)
			die("getsockname");
		printf("listening %u\n", ntohs(me.sin6_port)); /* port 0: the one we got */
	}
	fflush(stdout);
	signal(SIGCHLD, SIG_IGN);
	for (long i = 0; count <= 0 || i < count; i++) {
		pthread_t t;
		int c;

		if (opt_accept_delay_ms)
			usleep((useconds_t)opt_accept_delay_ms * 1000);
		c = accept(l, NULL, NULL);

		if (c < 0) {
			if (errno == EINTR)
				continue;
			die("accept");
		}
		if (opt_fork) {
			pid_t p = fork();

			if (p == 0) {
				close(l);
				serve(c);
				_exit(0);
			}
			close(c);
		} else if (count == 1) {
			serve(c);
		} else {
			active++;
			pthread_create(&t, NULL, serve_thread, (void *)(intptr_t)c);
			pthread_detach(t);
		}
	}
	close(l);
	while (active > 0)
		usleep(10000);
	return 0;
}

static int dial(const char *host, const char *port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
	int s;

	if (getaddrinfo(host, port, &hints, &ai))
		die("getaddrinfo");
	s = socket(ai->ai_family, SOCK_STREAM, 0);
	if (s < 0)
		die("socket");
	if (connect(s, ai->ai_addr, ai->ai_addrlen) < 0)
		die("connect");
	freeaddrinfo(ai);
	return s;
}

struct wr { int fd; uint64_t total; };

static void *writer(void *arg)
{
	struct wr *w = arg;
	uint8_t *buf = malloc((size_t)opt_chunk);
	uint64_t off = 0;

	while (off < w->total) {
		size_t n = w->total - off < (uint64_t)opt_chunk ? (size_t)(w->total - off) : (size_t)opt_chunk;

		for (size_t i = 0; i < n; i++)
			buf[i] = pat(off + i);
		if (write_all(w->fd, buf, n) < 0)
			die("client write");
		off += n;
		if (opt_pace_us) /* stretch the stream over time (path switch tests) */
			usleep((useconds_t)opt_pace_us);
	}
	if (shutdown(w->fd, SHUT_WR) < 0)
		die("shutdown");
	free(buf);
	return NULL;
}

static int check_banner(int s)
{
	char b[32];
	size_t got = 0, want = strlen(banner);

	while (got < want) {
		ssize_t n = read(s, b + got, want - got);

		if (n <= 0)
			die("banner read");
		got += (size_t)n;
	}
	if (memcmp(b, banner, want)) {
		fprintf(stderr, "shim-stream: bad banner\n");
		return -1;
	}
	return 0;
}

/* One stream: send total bytes, read the echo, verify each byte. */
static int stream(const char *host, const char *port, uint64_t total)
{
	static uint8_t buf[1 << 16];
	struct wr w;
	pthread_t t;
	uint64_t got = 0;
	int s = dial(host, port);

	if (opt_speak_first && check_banner(s) < 0)
		return 1;
	w.fd = s;
	w.total = total;
	pthread_create(&t, NULL, writer, &w);
	for (;;) {
		ssize_t n = read(s, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("client read");
		if (n == 0)
			break;
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] != pat(got + (uint64_t)i)) {
				fprintf(stderr, "shim-stream: mismatch at byte %llu\n",
					(unsigned long long)(got + (uint64_t)i));
				return 1;
			}
		got += (uint64_t)n;
	}
	pthread_join(t, NULL);
	if (opt_linger_ms) { /* so that monitors see the finished connection */
		fprintf(stderr, "shim-stream: all %llu bytes back, lingering\n",
			(unsigned long long)got);
		usleep((useconds_t)opt_linger_ms * 1000);
	}
	close(s);
	if (got != total) {
		fprintf(stderr, "shim-stream: got %llu of %llu bytes\n",
			(unsigned long long)got, (unsigned long long)total);
		return 1;
	}
	return 0;
}

/* n times: connect, 1 byte there and back, close. */
static int cycles(const char *host, const char *port, long n)
{
	for (long i = 0; i < n; i++) {
		int s = dial(host, port);
		uint8_t b = (uint8_t)i, r = 0;

		if (opt_speak_first && check_banner(s) < 0)
			return 1;
		if (write_all(s, &b, 1) < 0 || read(s, &r, 1) != 1 || r != b) {
			fprintf(stderr, "shim-stream: cycle %ld failed: %s\n", i, strerror(errno));
			return 1;
		}
		close(s);
	}
	return 0;
}

/* k connections open at once, then `bytes` echoed on each in turn. */
static int multi(const char *host, const char *port, uint64_t bytes, long k)
{
	static uint8_t buf[1 << 16];
	int *fds = calloc((size_t)k, sizeof(int));

	for (long i = 0; i < k; i++) {
		fds[i] = dial(host, port);
		if (opt_speak_first && check_banner(fds[i]) < 0)
			return 1;
	}
	for (long i = 0; i < k; i++) {
		uint64_t off = 0, got = 0;

		while (got < bytes) {
			size_t n = bytes - off < sizeof(buf) / 2 ? (size_t)(bytes - off) : sizeof(buf) / 2;
			ssize_t r;

			for (size_t j = 0; j < n; j++)
				buf[j] = pat(off + j);
			if (n && write_all(fds[i], buf, n) < 0)
				die("multi write");
			off += n;
			while (got < off) {
				r = read(fds[i], buf, (size_t)(off - got));
				if (r <= 0)
					die("multi read");
				for (ssize_t j = 0; j < r; j++)
					if (buf[j] != pat(got + (uint64_t)j)) {
						fprintf(stderr, "shim-stream: conn %ld mismatch\n", i);
						return 1;
					}
				got += (uint64_t)r;
			}
		}
	}
	for (long i = 0; i < k; i++)
		close(fds[i]);
	free(fds);
	return 0;
}

int main(int argc, char **argv)
{
	int i = 1;

	signal(SIGPIPE, SIG_IGN);
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--speak-first"))
			opt_speak_first = 1;
		else if (!strcmp(argv[i], "--fork"))
			opt_fork = 1;
		else if (!strcmp(argv[i], "--accept-delay") && i + 1 < argc)
			opt_accept_delay_ms = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--pace-us") && i + 1 < argc)
			opt_pace_us = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--linger-ms") && i + 1 < argc)
			opt_linger_ms = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--chunk") && i + 1 < argc)
			opt_chunk = atoi(argv[++i]);
		else
			break;
	}
	if (opt_chunk <= 0 || opt_chunk > (1 << 24))
		opt_chunk = 16384;
	if (i + 2 <= argc && !strcmp(argv[i], "server"))
		return server(argv[i + 1], i + 2 < argc ? atol(argv[i + 2]) : 0);
	if (i + 4 <= argc && !strcmp(argv[i], "client")) {
		uint64_t bytes = strtoull(argv[i + 3], NULL, 0);
		long conns = i + 4 < argc ? atol(argv[i + 4]) : 1;

		for (long k = 0; k < conns; k++)
			if (stream(argv[i + 1], argv[i + 2], bytes))
				return 1;
		return 0;
	}
	if (i + 4 <= argc && !strcmp(argv[i], "cycles"))
		return cycles(argv[i + 1], argv[i + 2], atol(argv[i + 3]));
	if (i + 5 <= argc && !strcmp(argv[i], "multi"))
		return multi(argv[i + 1], argv[i + 2], strtoull(argv[i + 3], NULL, 0), atol(argv[i + 4]));
	fprintf(stderr, "usage: shim-stream [--speak-first] [--fork] [--accept-delay MS] [--chunk N] [--pace-us N] [--linger-ms N] server PORT [COUNT]\n"
			"       shim-stream [--speak-first] [--chunk N] client HOST PORT BYTES [CONNS]\n"
			"       shim-stream [--speak-first] cycles HOST PORT N\n"
			"       shim-stream [--speak-first] multi HOST PORT BYTES K\n");
	return 2;
}
