// SPDX-License-Identifier: MIT
/*
 * Where a short connection's time goes: connect, a 1-byte request, the
 * 1-byte answer, close (the netperf TCP_CRR pattern), each phase timed on
 * the client, medians and 90th percentiles. Plain sockets: run it under
 * ivsock-run for the accelerated numbers, without for kernel TCP
 * (bench/crr-phases runs both in the lab, interleaved).
 *
 *   crr_phases server PORT
 *   crr_phases client HOST PORT COUNT
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { P_CONNECT, P_WRITE, P_READ, P_CLOSE, P_TOTAL, NPHASE };
static const char *const phase_name[NPHASE] = { "connect", "write", "read", "close", "total" };

static double now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int serve(const char *port)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE }, *ai;
	int one = 1, l;

	if (getaddrinfo(NULL, port, &hints, &ai) != 0)
		return 1;
	l = socket(ai->ai_family, SOCK_STREAM, 0);
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (l < 0 || bind(l, ai->ai_addr, ai->ai_addrlen) < 0 || listen(l, 128) < 0) {
		perror("crr_phases: listen");
		return 1;
	}
	freeaddrinfo(ai);
	printf("listening %s\n", port);
	fflush(stdout);
	for (;;) {
		char b[64];
		int c = accept(l, NULL, NULL);

		if (c < 0)
			continue;
		if (read(c, b, 1) == 1 && write(c, b, 1) != 1)
			perror("crr_phases: write");
		while (read(c, b, sizeof(b)) > 0)
			;
		close(c);
	}
}

static int run_client(const char *host, const char *port, long n)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai;
	double *t[NPHASE], t0, start;

	if (n <= 0 || getaddrinfo(host, port, &hints, &ai) != 0)
		return 2;
	for (int k = 0; k < NPHASE; k++)
		if (!(t[k] = calloc((size_t)n, sizeof(double))))
			return 1;
	start = now_us();
	for (long i = 0; i < n; i++) {
		double ts[NPHASE + 1];
		char b = (char)i, r = 0;
		int s;

		ts[0] = now_us();
		s = socket(ai->ai_family, SOCK_STREAM, 0);
		if (s < 0 || connect(s, ai->ai_addr, ai->ai_addrlen) < 0) {
			perror("crr_phases: connect");
			return 1;
		}
		ts[1] = now_us();
		if (write(s, &b, 1) != 1)
			return 1;
		ts[2] = now_us();
		if (read(s, &r, 1) != 1 || r != b) {
			fprintf(stderr, "crr_phases: connection %ld: bad answer\n", i);
			return 1;
		}
		ts[3] = now_us();
		close(s);
		ts[4] = now_us();
		for (int k = 0; k < P_TOTAL; k++)
			t[k][i] = ts[k + 1] - ts[k];
		t[P_TOTAL][i] = ts[4] - ts[0];
	}
	t0 = now_us() - start;
	for (int k = 0; k < NPHASE; k++) {
		qsort(t[k], (size_t)n, sizeof(double), cmp_double);
		printf("%-8s p50 %8.1f us  p90 %8.1f us\n", phase_name[k], t[k][n / 2],
		       t[k][n * 9 / 10]);
	}
	printf("rate %.0f connections/s\n", (double)n / t0 * 1e6);
	freeaddrinfo(ai);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "server"))
		return serve(argv[2]);
	if (argc == 5 && !strcmp(argv[1], "client"))
		return run_client(argv[2], argv[3], atol(argv[4]));
	fprintf(stderr, "usage: crr_phases server PORT\n"
			"       crr_phases client HOST PORT COUNT\n");
	return 2;
}
