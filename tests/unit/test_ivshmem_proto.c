// SPDX-License-Identifier: MIT
/*
 * Unit tests of the ivshmem server protocol codec (protocol/src/ivshmem_proto.c)
 * against hand-built byte sequences over a socketpair: little-endian int64,
 * fds by SCM_RIGHTS, short reads, EOF, truncated control data without fd
 * leaks, and both sides of the greeting.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include "ivsock/ivshmem_proto.h"
#include "testutil.h"

struct sp {
	int s[2]; /* [0] the codec's end, [1] the hand-built end */
	int base_fds;
};

static int setup(void **state)
{
	struct sp *p = calloc(1, sizeof(*p));

	p->base_fds = count_fds();
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p->s), 0);
	*state = p;
	return 0;
}

static int teardown(void **state)
{
	struct sp *p = *state;

	if (p->s[0] >= 0)
		close(p->s[0]);
	if (p->s[1] >= 0)
		close(p->s[1]);
	/* every test must leave no fd behind */
	assert_int_equal(count_fds(), p->base_fds);
	free(p);
	return 0;
}

/* Send raw bytes with nfds copies of fd attached. */
static void raw_send(int sock, const void *bytes, size_t n, int fd, int nfds)
{
	char ctl[CMSG_SPACE(8 * sizeof(int))];
	struct iovec iov = { (void *)bytes, n };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	int i;

	memset(ctl, 0, sizeof(ctl));
	if (nfds > 0) {
		struct cmsghdr *c;

		msg.msg_control = ctl;
		msg.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
		for (i = 0; i < nfds; i++)
			memcpy(CMSG_DATA(c) + (size_t)i * sizeof(int), &fd, sizeof(int));
	}
	assert_int_equal(sendmsg(sock, &msg, MSG_NOSIGNAL), (ssize_t)n);
}

static void le64(uint8_t out[8], int64_t v)
{
	int i;

	for (i = 0; i < 8; i++)
		out[i] = (uint8_t)((uint64_t)v >> (8 * i));
}

static void test_recv_le(void **state)
{
	struct sp *p = *state;
	const uint8_t b1[8] = { 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01 };
	const uint8_t m1[8] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	int64_t v;
	int fd;

	raw_send(p->s[1], b1, 8, -1, 0);
	raw_send(p->s[1], m1, 8, -1, 0);
	assert_int_equal(ivsock_ivshmem_recv(p->s[0], &v, &fd), 0);
	assert_true(v == 0x0102030405060708LL);
	assert_int_equal(fd, -1);
	assert_int_equal(ivsock_ivshmem_recv(p->s[0], &v, &fd), 0);
	assert_true(v == -1);
}

static void test_send_le(void **state)
{
	struct sp *p = *state;
	uint8_t got[8], want[8];

	assert_int_equal(ivsock_ivshmem_send(p->s[0], 0x1122334455667788LL, -1), 0);
	assert_int_equal(read(p->s[1], got, 8), 8);
	le64(want, 0x1122334455667788LL);
	assert_memory_equal(got, want, 8);
	assert_int_equal(ivsock_ivshmem_send(p->s[0], -2, -1), 0);
	assert_int_equal(read(p->s[1], got, 8), 8);
	le64(want, -2);
	assert_memory_equal(got, want, 8);
}

static void test_fd_passing(void **state)
{
	struct sp *p = *state;
	int ev = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), fd;
	uint64_t one = 1, cnt = 0;
	int64_t v;

	assert_int_equal(ivsock_ivshmem_send(p->s[1], 7, ev), 0);
	assert_int_equal(ivsock_ivshmem_recv(p->s[0], &v, &fd), 0);
	assert_true(v == 7);
	assert_true(fd >= 0 && fd != ev);
	/* the same eventfd: a write on one side is read on the other */
	assert_int_equal(write(fd, &one, 8), 8);
	assert_int_equal(read(ev, &cnt, 8), 8);
	assert_true(cnt == 1);
	close(fd);
	close(ev);
}

struct later {
	int sock;
	const uint8_t *bytes;
	size_t n;
};

static void *send_later(void *arg)
{
	struct later *l = arg;

	usleep(50000);
	raw_send(l->sock, l->bytes, l->n, -1, 0);
	return NULL;
}

/* 3 bytes (with the fd) now, the other 5 later: one message. */
static void test_short_read(void **state)
{
	struct sp *p = *state;
	int ev = eventfd(0, EFD_CLOEXEC), fd;
	uint8_t b[8];
	struct later l = { p->s[1], b + 3, 5 };
	pthread_t th;
	int64_t v;

	le64(b, 0x0a0b0c0d0e0f1011LL);
	raw_send(p->s[1], b, 3, ev, 1);
	assert_int_equal(pthread_create(&th, NULL, send_later, &l), 0);
	assert_int_equal(ivsock_ivshmem_recv(p->s[0], &v, &fd), 0);
	pthread_join(th, NULL);
	assert_true(v == 0x0a0b0c0d0e0f1011LL);
	assert_true(fd >= 0);
	close(fd);
	close(ev);
}

static void test_eof(void **state)
{
	struct sp *p = *state;
	int64_t v;
	int fd;

	close(p->s[1]);
	p->s[1] = -1;
	assert_int_equal(ivsock_ivshmem_recv(p->s[0], &v, &fd), -ECONNRESET);
	assert_int_equal(fd, -1);
	/* and sending to a closed peer: -EPIPE, no SIGPIPE */
	assert_int_equal(ivsock_ivshmem_send(p->s[0], 1, -1), -EPIPE);
}

static void test_eof_mid_message(void **state)
{
	struct sp *p = *state;
	int ev = eventfd(0, EFD_CLOEXEC), fd;
	uint8_t b[8] = { 1 };
	int64_t v;

	raw_send(p->s[1], b, 5, ev, 1); /* the fd arrives, the message does not */
	close(ev);
	close(p->s[1]);
	p->s[1] = -1;
	assert_int_equal(ivsock_ivshmem_recv(p->s[0], &v, &fd), -EPROTO);
	assert_int_equal(fd, -1);
	/* teardown checks the received fd was closed */
}

/* More fds than the receive buffer holds: MSG_CTRUNC -> -EPROTO, no leak. */
static void test_truncated_control(void **state)
{
	struct sp *p = *state;
	int ev = eventfd(0, EFD_CLOEXEC), fd, before;
	uint8_t b[8] = { 0 };
	int64_t v;

	raw_send(p->s[1], b, 8, ev, 8);
	close(ev);
	before = count_fds();
	assert_int_equal(ivsock_ivshmem_recv(p->s[0], &v, &fd), -EPROTO);
	assert_int_equal(fd, -1);
	assert_int_equal(count_fds(), before);
}

/* Two fds with one message: refused, both closed. */
static void test_two_fds(void **state)
{
	struct sp *p = *state;
	int ev = eventfd(0, EFD_CLOEXEC), fd, before;
	uint8_t b[8] = { 0 };
	int64_t v;

	raw_send(p->s[1], b, 8, ev, 2);
	close(ev);
	before = count_fds();
	assert_int_equal(ivsock_ivshmem_recv(p->s[0], &v, &fd), -EPROTO);
	assert_int_equal(fd, -1);
	assert_int_equal(count_fds(), before);
}

static void test_nonblocking_empty(void **state)
{
	struct sp *p = *state;
	int64_t v;
	int fd;

	assert_int_equal(fcntl(p->s[0], F_SETFL, O_NONBLOCK), 0);
	assert_int_equal(ivsock_ivshmem_recv(p->s[0], &v, &fd), -EAGAIN);
}

static void test_greeting(void **state)
{
	struct sp *p = *state;
	struct ivsock_ivshmem_greeting g;
	int shm = memfd_create("ivsock-greet", MFD_CLOEXEC);
	uint8_t raw[24], want[8];

	assert_int_equal(ivsock_ivshmem_server_greeting(p->s[1], 42, shm), 0);
	assert_int_equal(ivsock_ivshmem_client_greeting(p->s[0], &g), 0);
	assert_true(g.version == 0);
	assert_true(g.own_id == 42);
	assert_true(g.shm_fd >= 0);
	close(g.shm_fd);
	/* the server's bytes: 0, id, -1 */
	assert_int_equal(ivsock_ivshmem_server_greeting(p->s[0], 5, shm), 0);
	{
		char ctl[CMSG_SPACE(sizeof(int))];
		struct iovec iov = { raw, sizeof(raw) };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
				    .msg_control = ctl, .msg_controllen = sizeof(ctl) };
		size_t got = 0;

		while (got < sizeof(raw)) {
			ssize_t n;

			iov.iov_base = raw + got;
			iov.iov_len = sizeof(raw) - got;
			m.msg_control = ctl;
			m.msg_controllen = sizeof(ctl);
			n = recvmsg(p->s[1], &m, MSG_CMSG_CLOEXEC);
			assert_true(n > 0);
			if (m.msg_controllen > 0) {
				int f;

				memcpy(&f, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof(int));
				close(f);
			}
			got += (size_t)n;
		}
	}
	le64(want, 0);
	assert_memory_equal(raw, want, 8);
	le64(want, 5);
	assert_memory_equal(raw + 8, want, 8);
	le64(want, -1);
	assert_memory_equal(raw + 16, want, 8);
	close(shm);
}

static void test_greeting_bad(void **state)
{
	struct sp *p = *state;
	struct ivsock_ivshmem_greeting g;
	int shm = memfd_create("ivsock-greet", MFD_CLOEXEC);
	int k;

	for (k = 0; k < 5; k++) {
		int want;

		switch (k) {
		case 0: /* bad version */
			ivsock_ivshmem_send(p->s[1], 1, -1);
			want = -EPROTONOSUPPORT;
			break;
		case 1: /* peer ID out of range */
			ivsock_ivshmem_send(p->s[1], 0, -1);
			ivsock_ivshmem_send(p->s[1], 70000, -1);
			want = -EPROTO;
			break;
		case 2: /* region message without its fd */
			ivsock_ivshmem_send(p->s[1], 0, -1);
			ivsock_ivshmem_send(p->s[1], 3, -1);
			ivsock_ivshmem_send(p->s[1], -1, -1);
			want = -EPROTO;
			break;
		case 3: /* an fd where none belongs: closed, refused */
			ivsock_ivshmem_send(p->s[1], 0, shm);
			want = -EPROTO;
			break;
		default: /* region fd under a value other than -1 */
			ivsock_ivshmem_send(p->s[1], 0, -1);
			ivsock_ivshmem_send(p->s[1], 3, -1);
			ivsock_ivshmem_send(p->s[1], 9, shm);
			want = -EPROTO;
			break;
		}
		assert_int_equal(ivsock_ivshmem_client_greeting(p->s[0], &g), want);
		assert_int_equal(g.shm_fd, -1);
	}
	close(shm);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_recv_le),
		T(test_send_le),
		T(test_fd_passing),
		T(test_short_read),
		T(test_eof),
		T(test_eof_mid_message),
		T(test_truncated_control),
		T(test_two_fds),
		T(test_nonblocking_empty),
		T(test_greeting),
		T(test_greeting_bad),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
