// SPDX-License-Identifier: MIT
// sendfile from a regular file to the socket, with an offset pointer and with
// the file position (offset NULL), in odd chunk sizes; the receiver verifies.
#include "conf.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/sendfile.h>
#include <unistd.h>

#define FSIZE (3u << 20)

int case_server(int lfd)
{
	int fd = conf_accept(lfd);
	uint64_t in = 0;

	recv_stream(fd, SEED_C2S, &in, 2 * (uint64_t)FSIZE, 65536);
	tp("server got %llu bytes from sendfile ok", (unsigned long long)in);
	tr("read at EOF", wait_eof(fd));
	close(fd);
	return 0;
}

int case_client(void)
{
	char path[] = "/tmp/cf_sendfile.XXXXXX";
	int fd = conf_connect(), f = mkstemp(path);
	char *b = malloc(FSIZE);
	off_t off = 0;
	ssize_t r;
	uint64_t sent = 0;

	CHECK(f >= 0 && b);
	unlink(path);
	/* The file holds the first FSIZE stream bytes, then the next FSIZE. */
	stream_fill(SEED_C2S, 0, b, FSIZE);
	write_all(f, b, FSIZE);
	stream_fill(SEED_C2S, FSIZE, b, FSIZE);
	write_all(f, b, FSIZE);
	while (off < (off_t)FSIZE) {
		r = sendfile(fd, f, &off, FSIZE - off < 100003 ? FSIZE - off : 100003);
		CHECK(r > 0);
		sent += r;
	}
	tp("sendfile with offset: %llu bytes, file position untouched: %d", (unsigned long long)sent,
	   lseek(f, 0, SEEK_CUR) == 2 * (off_t)FSIZE);
	CHECK(lseek(f, FSIZE, SEEK_SET) == FSIZE);
	while (sent < 2 * (uint64_t)FSIZE) {
		r = sendfile(fd, f, NULL, 777777);
		CHECK(r > 0);
		sent += r;
	}
	tp("sendfile from position: total %llu, position at end: %d", (unsigned long long)sent,
	   lseek(f, 0, SEEK_CUR) == 2 * (off_t)FSIZE);
	tr("sendfile at end of file", sendfile(fd, f, NULL, 100));
	free(b);
	close(f);
	tr("shutdown(SHUT_WR)", shutdown(fd, SHUT_WR));
	tr("read at EOF", wait_eof(fd));
	close(fd);
	return 0;
}
