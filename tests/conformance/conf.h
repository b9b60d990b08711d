/* SPDX-License-Identifier: MIT */
/*
 * Shared harness of the conformance programs: argument parsing, connect and
 * accept helpers, a deterministic transcript, and a checksummed PRNG byte
 * stream so that every byte moved is verified by its receiver.
 */
#ifndef IVS_CONF_H
#define IVS_CONF_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

/* Filled by main() from `PROG server|client ADDR PORT`. */
struct conf {
	bool server;
	const char *addr;
	int port;
	int family;                 /* AF_INET or AF_INET6, from addr */
	struct sockaddr_storage sa; /* addr:port */
	socklen_t salen;
};
extern struct conf cf;

/* Each program defines these two. The server gets a listening socket. */
int case_server(int lfd);
int case_client(void);

/* Transcript: one line per observable result, on stdout, one write each. */
void tp(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print "what = RET" or "what = -1 ENAME"; returns ret with errno kept. */
long tr(const char *what, long ret);
/* Print "FAIL file:line: msg (errno)" and exit 1. */
void fail_at(const char *file, int line, const char *msg) __attribute__((noreturn));
#define FAIL(msg) fail_at(__FILE__, __LINE__, (msg))
#define CHECK(c) do { if (!(c)) FAIL("check failed: " #c); } while (0)

const char *errname(int e);
const char *pollname(unsigned revents);   /* "POLLIN|POLLOUT" */
const char *epollname(unsigned events);   /* "EPOLLIN|EPOLLRDHUP" */

/* A new connected socket to cf (retries while the server is not up yet). */
int conf_connect(void);
/* accept() on lfd, failing the test on error. */
int conf_accept(int lfd);

/* The test byte stream: byte i of stream `seed` is a pure function of i. */
void stream_fill(uint32_t seed, uint64_t off, void *buf, size_t n);
/* @return -1 if buf matches the stream at off, else the offset of the first bad byte. */
int64_t stream_check(uint32_t seed, uint64_t off, const void *buf, size_t n);

/* Write n stream bytes from *off in chunks of `chunk` (blocking). */
void send_stream(int fd, uint32_t seed, uint64_t *off, uint64_t n, size_t chunk);
/* Read exactly n stream bytes (blocking), verifying each; EOF early = fail. */
void recv_stream(int fd, uint32_t seed, uint64_t *off, uint64_t n, size_t chunk);
/* Verify that buf (n bytes) is stream seed at *off, advance *off; fail if not. */
void verify(uint32_t seed, uint64_t *off, const void *buf, size_t n);

/* One-byte lock-step tokens between the two ends. */
void tok_send(int fd, char c);
void tok_recv(int fd, char want);

/* Read and discard until EOF (or an error); @return the read's last result. */
long wait_eof(int fd);

/* Full write of a buffer, failing on error. */
void write_all(int fd, const void *buf, size_t n);
/* Full read of n bytes, failing on error or EOF. */
void read_all(int fd, void *buf, size_t n);

/* Seeds of the two directions. */
enum { SEED_C2S = 0x1234u, SEED_S2C = 0x9876u };

#endif
