// SPDX-License-Identifier: MIT
/* Unit tests of protocol/src/agent_client.c against a scripted fake agent
 * (a thread on an abstract SEQPACKET socket): a good HELLO with a real
 * region, PEER_FD through the doorbell, STATUS, and malformed replies that
 * must fail cleanly without leaking fds. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <cmocka.h>

#include "ivsock/agent_client.h"

#define REGION (4u << 20)

enum mode { GOOD, BAD_SEQ, REFUSED, STALE_FORMAT, ONE_FD, SHORT };

struct fake {
	enum mode mode;
	char name[64];       /* "@..." */
	int lfd;
	int memfd;
	uint64_t format_id;
	uint64_t tables_size;
	int peer_efd;        /* what PEER_FD hands out (we keep a copy) */
	struct ivsock_ag_peer asked;
	pthread_t th;
};

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static void send_reply(int fd, uint16_t type, uint32_t seq, int32_t status,
		       const void *payload, uint32_t len, const int *fds, int nfds)
{
	struct ivsock_msg_hdr h;
	struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)payload, len } };
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = len ? 2 : 1 };
	char ctl[CMSG_SPACE(2 * sizeof(int))];

	ivsock_msg_init(&h, type, len, seq);
	h.status = status;
	if (nfds) {
		struct cmsghdr *c;

		memset(ctl, 0, sizeof(ctl));
		m.msg_control = ctl;
		m.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
		c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
	}
	assert_true(sendmsg(fd, &m, MSG_NOSIGNAL) >= 0);
}

static void *agent_thread(void *arg)
{
	struct fake *f = arg;
	int fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
	uint8_t buf[512];
	ssize_t n;

	while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) {
		struct ivsock_msg_hdr h;

		memcpy(&h, buf, sizeof(h));
		if (h.type == IVSOCK_AG_HELLO) {
			struct ivsock_ag_hello_reply r = {
				.backend = IVSOCK_BACKEND_SERVER, .vm_index = 1, .vm_gen = 1,
				.peer_id = 3, .client_id = 7, .vector = 2,
				.region_size = REGION, .format_id = f->format_id,
				.tables_size = f->tables_size,
			};
			int fds[2] = { f->memfd, eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK) };

			if (f->mode == STALE_FORMAT)
				r.format_id ^= 1;
			if (f->mode == REFUSED)
				send_reply(fd, IVSOCK_AG_HELLO_REPLY, h.seq, -EACCES, NULL, 0, NULL, 0);
			else if (f->mode == SHORT)
				send_reply(fd, IVSOCK_AG_HELLO_REPLY, h.seq, 0, &r, 8, fds, 2);
			else
				send_reply(fd, IVSOCK_AG_HELLO_REPLY,
					   f->mode == BAD_SEQ ? h.seq + 1 : h.seq, 0, &r, sizeof(r),
					   fds, f->mode == ONE_FD ? 1 : 2);
			close(fds[1]);
		} else if (h.type == IVSOCK_AG_PEER_FD) {
			memcpy(&f->asked, buf + sizeof(h), sizeof(f->asked));
			send_reply(fd, IVSOCK_AG_PEER_FD_REPLY, h.seq, 0, NULL, 0, &f->peer_efd, 1);
		} else if (h.type == IVSOCK_AG_STATUS) {
			send_reply(fd, IVSOCK_AG_STATUS_REPLY, h.seq, 0, "{\"ok\":1}", 8, NULL, 0);
		}
	}
	close(fd);
	return NULL;
}

static struct fake *fake_start(enum mode mode)
{
	struct fake *f = calloc(1, sizeof(*f));
	struct ivsock_region_params p;
	struct ivsock_region rg;
	struct sockaddr_un sa;
	socklen_t len;
	void *m;

	f->mode = mode;
	snprintf(f->name, sizeof(f->name), "@ivsock-test-client-%d-%d", getpid(), (int)mode);
	f->memfd = memfd_create("agent-client-test", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	assert_int_equal(ftruncate(f->memfd, REGION), 0);
	/* as ivsockd makes it: the shim refuses a region that can shrink */
	assert_int_equal(fcntl(f->memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL), 0);
	m = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_SHARED, f->memfd, 0);
	assert_ptr_not_equal(m, MAP_FAILED);
	ivsock_region_params_single(&p, 4096);
	p.vm_cap = 4;
	p.channel_cap = 16;
	p.listener_cap = 16;
	p.offer_cap = 64;
	assert_int_equal(ivsock_region_format(&rg, m, REGION, &p), 0);
	f->format_id = rg.format_id;
	f->tables_size = rg.tables_size;
	munmap(m, REGION);
	f->peer_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	assert_int_equal(ivsock_agent_sockaddr(f->name, &sa, &len), 0);
	f->lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(f->lfd, (struct sockaddr *)&sa, len), 0);
	assert_int_equal(listen(f->lfd, 4), 0);
	pthread_create(&f->th, NULL, agent_thread, f);
	return f;
}

static void fake_stop(struct fake *f)
{
	pthread_join(f->th, NULL);
	close(f->lfd);
	close(f->memfd);
	close(f->peer_efd);
	free(f);
}

static void test_good_hello_peer_fd_status(void **state)
{
	struct fake *f = fake_start(GOOD);
	struct ivsock_agent_conn c;
	char *json = NULL;
	uint64_t v = 0;

	(void)state;
	assert_int_equal(ivsock_agent_connect(f->name, &c), 0);
	assert_int_equal(c.info.client_id, 7);
	assert_int_equal(c.info.vector, 2);
	assert_int_equal(c.region.format_id, f->format_id);
	assert_int_equal(c.region.vm_cap, 4);
	assert_true(ivsock_doorbell_wait_fd(c.db) >= 0);
	/* An unknown doorbell is fetched with PEER_FD, then signalled. */
	assert_int_equal(ivsock_doorbell_notify(c.db, 5, 1), 0);
	assert_int_equal(f->asked.peer_id, 5);
	assert_int_equal(f->asked.vector, 1);
	assert_int_equal(read(f->peer_efd, &v, sizeof(v)), (ssize_t)sizeof(v));
	assert_int_equal(v, 1);
	/* Cached now: no second request needed, still works. */
	assert_int_equal(ivsock_doorbell_notify(c.db, 5, 1), 0);
	assert_int_equal(ivsock_agent_status(&c, &json), 0);
	assert_string_equal(json, "{\"ok\":1}");
	free(json);
	ivsock_agent_close(&c);
	ivsock_agent_close(&c); /* twice is fine */
	fake_stop(f);
}

static void expect_failure(enum mode mode, int want)
{
	int before = count_fds();
	struct fake *f = fake_start(mode);
	struct ivsock_agent_conn c;

	assert_int_equal(ivsock_agent_connect(f->name, &c), want);
	ivsock_agent_close(&c);
	fake_stop(f);
	assert_int_equal(count_fds(), before); /* nothing leaked */
}

static void test_bad_replies(void **state)
{
	(void)state;
	expect_failure(BAD_SEQ, -EBADE);
	expect_failure(REFUSED, -EACCES);
	expect_failure(STALE_FORMAT, -ESTALE);
	expect_failure(ONE_FD, -EPROTO);
	expect_failure(SHORT, -EPROTO);
}

static void test_no_agent(void **state)
{
	struct ivsock_agent_conn c;
	struct sockaddr_un sa;
	socklen_t len;
	char *json;

	(void)state;
	assert_int_equal(ivsock_agent_connect("@ivsock-test-nobody-here", &c), -ECONNREFUSED);
	assert_int_equal(ivsock_agent_status_at("/nonexistent/agent.sock", &json), -ENOENT);
	assert_int_equal(ivsock_agent_sockaddr(NULL, &sa, &len), 0);
	assert_int_equal(sa.sun_path[0], '\0');
	assert_memory_equal(sa.sun_path + 1, "ivsock-agent", 12);
	assert_int_equal(len, offsetof(struct sockaddr_un, sun_path) + 13);
	memset(sa.sun_path, 'x', sizeof(sa.sun_path));
	char longp[200];
	memset(longp, 'a', sizeof(longp) - 1);
	longp[sizeof(longp) - 1] = '\0';
	assert_int_equal(ivsock_agent_sockaddr(longp, &sa, &len), -ENAMETOOLONG);
}

int main(void)
{
	char uid[16];

	/* the fake agent is us: trust our uid when not root */
	snprintf(uid, sizeof(uid), "%u", (unsigned)getuid());
	if (getuid() != 0)
		setenv("IVSOCK_AGENT_UID", uid, 1);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_hello_peer_fd_status),
		cmocka_unit_test(test_bad_replies),
		cmocka_unit_test(test_no_agent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
