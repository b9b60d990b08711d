// SPDX-License-Identifier: MIT
// Partial reads and writes with odd sizes: writes and reads of unrelated
// prime-ish lengths, zero-length calls, and a read that asks for more than
// the peer has sent.
#include "conf.h"

#include <stdlib.h>
#include <unistd.h>

static const size_t wsz[] = { 1, 3, 7, 31, 127, 509, 1021, 4099, 8191, 65537, 131071, 2 };
static const size_t rsz[] = { 2, 5, 11, 997, 3, 16411, 1, 262147, 13, 4093 };
#define TOTAL (3u << 20)

int case_server(int lfd)
{
	int fd = conf_accept(lfd);
	char *b = malloc(262147);
	uint64_t in = 0;
	size_t i = 0;

	CHECK(b);
	tr("read(0 bytes)", read(fd, b, 0));
	while (in < TOTAL) {
		size_t k = rsz[i++ % 10];
		ssize_t r;

		if (k > TOTAL - in)
			k = TOTAL - in;
		r = read(fd, b, k);
		CHECK(r > 0 && (size_t)r <= k);
		verify(SEED_C2S, &in, b, r);
	}
	tp("server got %u odd-sized bytes ok", TOTAL);
	/* 5 bytes, then the client asks for 100: gets what is there. */
	stream_fill(SEED_S2C, 0, b, 5);
	tr("write(5)", write(fd, b, 5));
	tok_recv(fd, 'k');
	tr("read at EOF", read(fd, b, 10));
	free(b);
	close(fd);
	return 0;
}

int case_client(void)
{
	int fd = conf_connect();
	char *b = malloc(131071);
	uint64_t out = 0, in = 0;
	size_t i = 0;

	CHECK(b);
	tr("write(0 bytes)", write(fd, b, 0));
	while (out < TOTAL) {
		size_t k = wsz[i++ % 12];

		if (k > TOTAL - out)
			k = TOTAL - out;
		stream_fill(SEED_C2S, out, b, k);
		write_all(fd, b, k);
		out += k;
	}
	tp("client wrote %u bytes in odd sizes", TOTAL);
	tr("read(100) when 5 are sent", read(fd, b, 100));
	verify(SEED_S2C, &in, b, 5);
	tok_send(fd, 'k');
	free(b);
	close(fd);
	return 0;
}
