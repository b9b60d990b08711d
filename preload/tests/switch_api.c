// SPDX-License-Identifier: MIT
/*
 * switch-api: an echo pair that reads and writes through one API family, so
 * that a path switch in the middle of the stream (docs/switch.md) is seen by
 * that family: poll, select, epoll level-, edge-triggered and one-shot
 * (non-blocking sockets), blocking MSG_WAITALL reads, MSG_PEEK then read,
 * and FIONREAD-sized reads. The client writes a position-addressed pattern
 * (writer thread, paced) and checks every byte of the echo; exit 0 only if
 * all BYTES came back intact.
 *
 *   switch-api server PORT MODE
 *   switch-api client HOST PORT BYTES MODE PACE_US
 *   switch-api rr-client HOST PORT SECONDS MARKFILE   (bench/switch-pause)
 * MODE: poll select epoll-lt epoll-et epoll-oneshot epoll-et-once waitall peek
 *       fionread (epoll-et-once: one edge-triggered registration, never
 *       modified, as event loops do)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>

enum mode { M_POLL, M_SELECT, M_EPOLL_LT, M_EPOLL_ET, M_EPOLL_ONESHOT, M_EPOLL_ET_ONCE, M_WAITALL,
	     M_PEEK, M_FIONREAD };
static const char *const mode_names[] = { "poll", "select", "epoll-lt", "epoll-et",
					  "epoll-oneshot", "epoll-et-once", "waitall", "peek",
					  "fionread" };
static enum mode mode;
static int epfd = -1;
/* The client's writer thread waits with poll(): the family under test is
 * the reader's (one epoll registration cannot serve two threads waiting for
 * different directions). */
static __thread bool in_writer;

static void die(const char *what)
{
	fprintf(stderr, "switch-api: %s: %s\n", what, strerror(errno));
	exit(2);
}

static uint8_t pat(uint64_t i)
{
	uint64_t x = (i / 8 + 1) * 0x9e3779b97f4a7c15ULL;

	x ^= x >> 31;
	return (uint8_t)(x >> (8 * (i % 8)));
}

static bool nonblocking(void)
{
	return mode <= M_EPOLL_ET_ONCE;
}

/* Wait until fd has ev (non-blocking modes), through the mode's family. */
static void wait_for(int fd, short ev)
{
	if (mode == M_POLL || in_writer) {
		struct pollfd p = { .fd = fd, .events = ev };

		while (poll(&p, 1, -1) < 0)
			if (errno != EINTR)
				die("poll");
	} else if (mode == M_SELECT) {
		fd_set r, w;

		FD_ZERO(&r);
		FD_ZERO(&w);
		FD_SET(fd, ev & POLLIN ? &r : &w);
		while (select(fd + 1, &r, &w, NULL, NULL) < 0)
			if (errno != EINTR)
				die("select");
	} else if (mode == M_EPOLL_ET_ONCE) {
		/* the event loop's way: one edge-triggered registration for
		 * both directions, made once (setup); any edge, then retry */
		struct epoll_event e;

		(void)ev;
		while (epoll_wait(epfd, &e, 1, -1) < 0)
			if (errno != EINTR)
				die("epoll_wait");
	} else {
		struct epoll_event e = { .events = (ev & POLLIN ? EPOLLIN : EPOLLOUT) | EPOLLRDHUP,
					 .data.fd = fd };

		if (mode == M_EPOLL_ET)
			e.events |= EPOLLET;
		if (mode == M_EPOLL_ONESHOT)
			e.events |= EPOLLONESHOT;
		/* one registration per wait keeps the direction right (the
		 * modification re-arms an edge as the kernel does) */
		if (epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &e) < 0 && epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) < 0)
			die("epoll_ctl");
		while (epoll_wait(epfd, &e, 1, -1) < 0)
			if (errno != EINTR)
				die("epoll_wait");
	}
}

/* One read of up to n bytes the mode's way. @return count, 0 at EOF. */
static ssize_t get(int fd, uint8_t *buf, size_t n)
{
	for (;;) {
		ssize_t k;

		if (mode == M_WAITALL) {
			k = recv(fd, buf, n < 3001 ? n : 3001, MSG_WAITALL);
		} else if (mode == M_PEEK) {
			uint8_t tmp[4096];
			ssize_t p = recv(fd, tmp, n < sizeof(tmp) ? n : sizeof(tmp), MSG_PEEK);

			if (p <= 0) {
				k = p;
			} else {
				k = recv(fd, buf, (size_t)p, 0);
				if (k != p || memcmp(tmp, buf, (size_t)p)) {
					fprintf(stderr, "switch-api: peek %zd and read %zd differ\n", p, k);
					exit(1);
				}
			}
		} else if (mode == M_FIONREAD) {
			int avail = 0;
			struct pollfd p = { .fd = fd, .events = POLLIN };

			while (poll(&p, 1, -1) < 0)
				if (errno != EINTR)
					die("poll");
			if (ioctl(fd, FIONREAD, &avail) < 0)
				die("FIONREAD");
			k = recv(fd, buf, avail > 0 && (size_t)avail < n ? (size_t)avail : n, 0);
			/* readable with nothing queued is the end of stream */
			if ((avail > 0 && k <= 0) || (avail == 0 && k > 0)) {
				fprintf(stderr, "switch-api: FIONREAD %d but read %zd (poll said 0x%x)\n", avail, k,
					(unsigned)p.revents);
				exit(1);
			}
		} else {
			k = recv(fd, buf, n, 0);
		}
		if (k >= 0)
			return k;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN || !nonblocking())
			die("recv");
		wait_for(fd, POLLIN);
	}
}

static void put(int fd, const uint8_t *buf, size_t n)
{
	while (n) {
		ssize_t k = send(fd, buf, n, MSG_NOSIGNAL);

		if (k < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN || !nonblocking())
				die("send");
			wait_for(fd, POLLOUT);
			continue;
		}
		buf += k;
		n -= (size_t)k;
	}
}

static void setup(int fd, bool out)
{
	if (nonblocking() && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
		die("O_NONBLOCK");
	if (mode >= M_EPOLL_LT && mode <= M_EPOLL_ET_ONCE && (epfd = epoll_create1(0)) < 0)
		die("epoll_create1");
	if (mode == M_EPOLL_ET_ONCE) {
		/* the client's writer thread waits with poll: the reader's
		 * registration is for input only there */
		struct epoll_event e = { .events = EPOLLIN | EPOLLRDHUP | EPOLLET | (out ? EPOLLOUT : 0),
					 .data.fd = fd };

		if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) < 0)
			die("epoll_ctl");
	}
}

static int serve(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int one = 1, l = socket(AF_INET, SOCK_STREAM, 0), c;
	uint8_t buf[65536];
	ssize_t n;

	if (l < 0 || setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 4) < 0)
		die("listen");
	printf("listening %d\n", port);
	fflush(stdout);
	c = accept(l, NULL, NULL);
	if (c < 0)
		die("accept");
	setup(c, true);
	while ((n = get(c, buf, sizeof(buf))) > 0)
		put(c, buf, (size_t)n);
	if (shutdown(c, SHUT_WR) < 0)
		die("shutdown");
	close(c);
	close(l);
	return 0;
}

struct wr { int fd; uint64_t total; int pace_us; };

static void *writer(void *arg)
{
	struct wr *w = arg;
	uint8_t buf[20011];
	uint64_t off = 0;
	size_t step = 1;

	in_writer = true;
	while (off < w->total) {
		/* sizes vary: 1 byte up to 20011, so writes straddle the switch */
		size_t n = step % sizeof(buf) + 1;

		step = step * 7 + 3;
		if (n > w->total - off)
			n = (size_t)(w->total - off);
		for (size_t i = 0; i < n; i++)
			buf[i] = pat(off + i);
		put(w->fd, buf, n);
		off += n;
		if (w->pace_us)
			usleep((useconds_t)w->pace_us);
	}
	if (shutdown(w->fd, SHUT_WR) < 0)
		die("client shutdown");
	return NULL;
}

static int client(const char *host, int port, uint64_t total, int pace_us)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct wr w = { .total = total, .pace_us = pace_us };
	uint8_t buf[65536];
	uint64_t got = 0;
	pthread_t t;
	ssize_t n;

	if (inet_pton(AF_INET, host, &a.sin_addr) != 1)
		die("address");
	w.fd = socket(AF_INET, SOCK_STREAM, 0);
	if (w.fd < 0 || connect(w.fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("connect");
	setup(w.fd, false);
	if (pthread_create(&t, NULL, writer, &w))
		die("thread");
	while ((n = get(w.fd, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] != pat(got + (uint64_t)i)) {
				fprintf(stderr, "switch-api: %s: byte %llu differs\n", mode_names[mode],
					(unsigned long long)(got + (uint64_t)i));
				return 1;
			}
		got += (uint64_t)n;
	}
	pthread_join(t, NULL);
	if (got != total) {
		fprintf(stderr, "switch-api: %s: %llu of %llu bytes came back\n", mode_names[mode],
			(unsigned long long)got, (unsigned long long)total);
		return 1;
	}
	printf("OK %s bytes=%llu\n", mode_names[mode], (unsigned long long)got);
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_REALTIME, &t);
	return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

/*
 * Request/response (64 bytes each way) for SECS seconds against an echo
 * server; then the pause a path switch caused: the longest transaction that
 * started in the 100 ms after the time (ns since the epoch, CLOCK_REALTIME)
 * found in MARKFILE, next to the p50/p99 of all transactions.
 */
static int rr_client(const char *host, int port, double secs, const char *markfile)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	size_t cap = 1 << 22, n = 0;
	uint64_t *start = malloc(cap * sizeof(*start)), *dur = malloc(cap * sizeof(*dur));
	uint64_t end, mark = 0, worst = 0;
	uint8_t req[64], rsp[64];
	unsigned long long m;
	FILE *f;
	int fd;

	if (!start || !dur || inet_pton(AF_INET, host, &a.sin_addr) != 1)
		die("rr setup");
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("connect");
	memset(req, 0x5a, sizeof(req));
	end = now_ns() + (uint64_t)(secs * 1e9);
	while (n < cap) {
		uint64_t t0 = now_ns();

		if (t0 >= end)
			break;
		req[0] = (uint8_t)n;
		put(fd, req, sizeof(req));
		if (recv(fd, rsp, sizeof(rsp), MSG_WAITALL) != (ssize_t)sizeof(rsp) || rsp[0] != req[0]) {
			fprintf(stderr, "switch-api: rr: bad answer to transaction %zu\n", n);
			return 1;
		}
		start[n] = t0;
		dur[n++] = now_ns() - t0;
	}
	shutdown(fd, SHUT_WR);
	while (recv(fd, rsp, sizeof(rsp), 0) > 0)
		;
	close(fd);
	f = fopen(markfile, "r");
	if (f && fscanf(f, "%llu", &m) == 1)
		mark = m;
	if (f)
		fclose(f);
	for (size_t i = 0; i < n; i++)
		if (mark && start[i] + 1000000 >= mark && start[i] < mark + 100000000 && dur[i] > worst)
			worst = dur[i];
	qsort(dur, n, sizeof(*dur), cmp_u64);
	printf("RR n=%zu p50_us=%.1f p99_us=%.1f max_us=%.1f switch_us=%.1f\n", n,
	       n ? dur[n / 2] / 1e3 : 0, n ? dur[n * 99 / 100] / 1e3 : 0, n ? dur[n - 1] / 1e3 : 0,
	       worst / 1e3);
	return 0;
}

static int parse_mode(const char *s)
{
	for (size_t i = 0; i < sizeof(mode_names) / sizeof(mode_names[0]); i++)
		if (!strcmp(s, mode_names[i]))
			return (int)i;
	fprintf(stderr, "switch-api: unknown mode %s\n", s);
	exit(2);
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "server")) {
		mode = (enum mode)parse_mode(argv[3]);
		return serve(atoi(argv[2]));
	}
	if (argc == 7 && !strcmp(argv[1], "client")) {
		mode = (enum mode)parse_mode(argv[5]);
		return client(argv[2], atoi(argv[3]), strtoull(argv[4], NULL, 0), atoi(argv[6]));
	}
	if (argc == 6 && !strcmp(argv[1], "rr-client")) {
		mode = M_WAITALL;
		return rr_client(argv[2], atoi(argv[3]), atof(argv[4]), argv[5]);
	}
	fprintf(stderr, "usage: switch-api server PORT MODE\n"
			"       switch-api rr-client HOST PORT SECONDS MARKFILE\n"
			"       switch-api client HOST PORT BYTES MODE PACE_US\n");
	return 2;
}
