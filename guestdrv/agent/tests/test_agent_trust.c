// SPDX-License-Identifier: MIT
/*
 * The shim's side of trusting the agent (protocol/src/agent_client.c) and
 * its doorbell cache (protocol/src/doorbell.c, lazy backend):
 *   - a listener that is not root / a configured uid gets no byte (-EPERM);
 *   - a listener that never answers costs one timeout (-ETIMEDOUT), no hang;
 *   - an IVSOCK_AG_REFUSED notice is reported as its status;
 *   - fds are checked before use: unsealed or short region memfds, files,
 *     pipes posing as eventfds are refused (-EBADFD), nothing leaks;
 *   - a late reply to an earlier request is dropped with its fds;
 *   - the doorbell cache is bounded (LRU, evicted fds closed), forgets a
 *     peer whose directory entry changed (peer ID reused) or whose fd broke,
 *     and remembers failed lookups for a short while.
 */
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
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "ivsock/agent_client.h"
#include "ivsock/directory.h"

#define REGION (4u << 20)

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* The fake agents are threads of this process: their fds count too, and
 * they close them just after sending. */
static int fds_settled(int want)
{
	int n = count_fds();

	for (int i = 0; i < 200 && n != want; i++) {
		usleep(5000);
		n = count_fds();
	}
	return n;
}

static struct ivsock_agent_opts opts(int timeout_ms)
{
	struct ivsock_agent_opts o;

	ivsock_agent_opts_default(&o);
	o.timeout_ms = timeout_ms;
	if (getuid() != 0) { /* the fake agents are us */
		o.trusted[0] = getuid();
		o.ntrusted = 1;
	}
	return o;
}

static int sealed_memfd(size_t size, bool seal)
{
	int fd = memfd_create("trust-test", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	if (seal)
		assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL), 0);
	return fd;
}

static int listen_on(const char *name)
{
	struct sockaddr_un sa;
	socklen_t len;
	int fd;

	assert_int_equal(ivsock_agent_sockaddr(name, &sa, &len), 0);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, len), 0);
	assert_int_equal(listen(fd, 4), 0);
	return fd;
}

static void send_msg(int fd, uint16_t type, uint32_t seq, int32_t status, const void *payload,
		     uint32_t len, const int *fds, int nfds)
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

/* ---------------- who listens ---------------- */

static void test_untrusted_listener_gets_nothing(void **state)
{
	struct ivsock_agent_conn c;
	struct ivsock_agent_opts o = opts(500);
	char name[64], *json;
	int go[2], res[2];
	pid_t pid;
	long got = -1;

	(void)state;
	if (getuid() != 0) {
		skip();
		return;
	}
	snprintf(name, sizeof(name), "@ivsock-test-squat-%d", getpid());
	assert_int_equal(pipe(go), 0);
	assert_int_equal(pipe(res), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* the squatter: uid 65534, counts every byte it receives */
		char b = 0;
		long total = 0;
		int l, a;

		if (setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
			_exit(3);
		l = listen_on(name);
		if (write(go[1], &b, 1) != 1)
			_exit(3);
		for (int i = 0; i < 3; i++) {
			uint8_t buf[4096];
			ssize_t n;

			a = accept(l, NULL, NULL);
			if (a < 0)
				_exit(3);
			while ((n = recv(a, buf, sizeof(buf), 0)) > 0)
				total += n;
			close(a);
		}
		if (write(res[1], &total, sizeof(total)) != sizeof(total))
			_exit(3);
		_exit(0);
	}
	char b;
	assert_int_equal(read(go[0], &b, 1), 1);
	assert_int_equal(ivsock_agent_connect_opts(name, &o, &c), -EPERM);
	ivsock_agent_close(&c);
	assert_int_equal(ivsock_agent_dial_opts(name, &o), -EPERM);
	assert_int_equal(ivsock_agent_status_at(name, &json), -EPERM);
	assert_int_equal(read(res[0], &got, sizeof(got)), (ssize_t)sizeof(got));
	assert_int_equal(got, 0);
	waitpid(pid, NULL, 0);
	close(go[0]), close(go[1]), close(res[0]), close(res[1]);
}

static void *silent_thread(void *arg)
{
	int l = *(int *)arg, a = accept(l, NULL, NULL);

	/* accept, never answer; hold until the client gave up */
	if (a >= 0) {
		char buf[256];

		while (recv(a, buf, sizeof(buf), 0) > 0)
			;
		close(a);
	}
	return NULL;
}

static void test_silent_agent_times_out(void **state)
{
	struct ivsock_agent_opts o = opts(200);
	struct ivsock_agent_conn c;
	char name[64];
	pthread_t th;
	int l, before = count_fds();

	(void)state;
	snprintf(name, sizeof(name), "@ivsock-test-silent-%d", getpid());
	l = listen_on(name);
	pthread_create(&th, NULL, silent_thread, &l);
	assert_int_equal(ivsock_agent_connect_opts(name, &o, &c), -ETIMEDOUT);
	ivsock_agent_close(&c);
	pthread_join(th, NULL);
	close(l);
	assert_int_equal(count_fds(), before);
}

static void test_backlog_full_times_out(void **state)
{
	struct ivsock_agent_opts o = opts(200);
	struct sockaddr_un sa;
	socklen_t len;
	char name[64];
	int l, fill[16], nfill = 0, before = count_fds();

	(void)state;
	snprintf(name, sizeof(name), "@ivsock-test-full-%d", getpid());
	assert_int_equal(ivsock_agent_sockaddr(name, &sa, &len), 0);
	l = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(l, (struct sockaddr *)&sa, len), 0);
	assert_int_equal(listen(l, 0), 0);
	/* never accepted: fill the backlog with non-blocking connects */
	for (int i = 0; i < 16; i++) {
		int f = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

		if (connect(f, (struct sockaddr *)&sa, len) < 0) {
			close(f);
			break;
		}
		fill[nfill++] = f;
	}
	assert_int_equal(ivsock_agent_dial_opts(name, &o), -ETIMEDOUT);
	for (int i = 0; i < nfill; i++)
		close(fill[i]);
	close(l);
	assert_int_equal(count_fds(), before);
}

static void *refuse_thread(void *arg)
{
	int l = *(int *)arg, a = accept(l, NULL, NULL);

	send_msg(a, IVSOCK_AG_REFUSED, 0, -EACCES, NULL, 0, NULL, 0);
	close(a);
	return NULL;
}

static void test_refusal_notice(void **state)
{
	struct ivsock_agent_opts o = opts(1000);
	struct ivsock_agent_conn c;
	char name[64];
	pthread_t th;
	int l;

	(void)state;
	snprintf(name, sizeof(name), "@ivsock-test-refuse-%d", getpid());
	l = listen_on(name);
	for (int round = 0; round < 20; round++) {
		/* the notice may be read before or after the close: both ways
		 * it is the answer */
		pthread_create(&th, NULL, refuse_thread, &l);
		if (round & 1)
			usleep(2000);
		assert_int_equal(ivsock_agent_connect_opts(name, &o, &c), -EACCES);
		ivsock_agent_close(&c);
		pthread_join(th, NULL);
	}
	close(l);
}

/* ---------------- fds handed over ---------------- */

static void test_region_fd_checks(void **state)
{
	char path[] = "/tmp/ivsock-trust-XXXXXX";
	int good = sealed_memfd(REGION, true), loose = sealed_memfd(REGION, false);
	int shortfd = sealed_memfd(4096, true), file = mkstemp(path), p[2], efd;

	(void)state;
	assert_true(file >= 0);
	unlink(path);
	assert_int_equal(ftruncate(file, REGION), 0);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	efd = eventfd(0, EFD_CLOEXEC);
	assert_int_equal(ivsock_agent_check_region_fd(good, IVSOCK_BACKEND_SERVER, REGION), 0);
	assert_int_equal(ivsock_agent_check_region_fd(loose, IVSOCK_BACKEND_SERVER, REGION), -EBADFD);
	assert_int_equal(ivsock_agent_check_region_fd(shortfd, IVSOCK_BACKEND_SERVER, REGION), -EBADFD);
	assert_int_equal(ivsock_agent_check_region_fd(file, IVSOCK_BACKEND_SERVER, REGION), -EBADFD);
	assert_int_equal(ivsock_agent_check_region_fd(p[0], IVSOCK_BACKEND_SERVER, REGION), -EBADFD);
	assert_int_equal(ivsock_agent_check_region_fd(-1, IVSOCK_BACKEND_SERVER, REGION), -EBADFD);
	/* pci: a character device that is not ours */
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	assert_int_equal(ivsock_agent_check_region_fd(null, IVSOCK_BACKEND_PCI, REGION), -EBADFD);
	assert_int_equal(ivsock_agent_check_region_fd(good, IVSOCK_BACKEND_PCI, REGION), -EBADFD);
	assert_int_equal(ivsock_agent_check_region_fd(good, 99, REGION), -EBADFD);

	int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	assert_int_equal(ivsock_agent_check_eventfd(efd), 0);
	assert_int_equal(ivsock_agent_check_eventfd(p[0]), -EBADFD);
	assert_int_equal(ivsock_agent_check_eventfd(p[1]), -EBADFD);
	assert_int_equal(ivsock_agent_check_eventfd(tfd), -EBADFD);
	assert_int_equal(ivsock_agent_check_eventfd(good), -EBADFD);
	assert_int_equal(ivsock_agent_check_eventfd(null), -EBADFD);
	close(tfd), close(null), close(good), close(loose), close(shortfd), close(file);
	close(p[0]), close(p[1]), close(efd);
}

enum bad { BAD_UNSEALED, BAD_SHORT, BAD_PIPE, BAD_PEER_PIPE, GOOD_DIR };

struct fake {
	enum bad bad;
	char name[64];
	int lfd, memfd;
	void *map;
	struct ivsock_region rg;
	int peer_fd_asks;
	bool peer_fail;
	pthread_t th;
};

static void *fake_thread(void *arg)
{
	struct fake *f = arg;
	int a = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
	uint8_t buf[512];
	ssize_t n;

	while ((n = recv(a, buf, sizeof(buf), 0)) > 0) {
		struct ivsock_msg_hdr h;

		memcpy(&h, buf, sizeof(h));
		if (h.type == IVSOCK_AG_HELLO) {
			struct ivsock_ag_hello_reply r = {
				.backend = IVSOCK_BACKEND_SERVER, .vm_index = 0, .vm_gen = 1,
				.peer_id = 3, .client_id = 7, .vector = 0,
				.region_size = REGION, .format_id = f->rg.format_id,
				.tables_size = f->rg.tables_size,
			};
			int p[2] = { -1, -1 }, fds[2] = { f->memfd, -1 };

			if (f->bad == BAD_PIPE) {
				assert_int_equal(pipe2(p, O_CLOEXEC), 0);
				fds[1] = p[0];
			} else {
				fds[1] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
			}
			send_msg(a, IVSOCK_AG_HELLO_REPLY, h.seq, 0, &r, sizeof(r), fds, 2);
			close(fds[1]);
			if (p[1] >= 0)
				close(p[1]);
		} else if (h.type == IVSOCK_AG_PEER_FD) {
			int p[2] = { -1, -1 }, fd;

			f->peer_fd_asks++;
			if (f->peer_fail) {
				send_msg(a, IVSOCK_AG_PEER_FD_REPLY, h.seq, -ENOENT, NULL, 0, NULL, 0);
				continue;
			}
			if (f->bad == BAD_PEER_PIPE) {
				assert_int_equal(pipe2(p, O_CLOEXEC), 0);
				fd = p[1];
			} else {
				fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
			}
			send_msg(a, IVSOCK_AG_PEER_FD_REPLY, h.seq, 0, NULL, 0, &fd, 1);
			close(fd);
			if (p[0] >= 0)
				close(p[0]);
		}
	}
	close(a);
	return NULL;
}

static struct fake *fake_start(enum bad bad)
{
	struct fake *f = calloc(1, sizeof(*f));
	struct ivsock_region_params p;

	f->bad = bad;
	snprintf(f->name, sizeof(f->name), "@ivsock-test-trust-%d-%d", getpid(), (int)bad);
	f->memfd = sealed_memfd(REGION, false);
	f->map = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_SHARED, f->memfd, 0);
	assert_ptr_not_equal(f->map, MAP_FAILED);
	ivsock_region_params_single(&p, 4096);
	p.vm_cap = 4;
	p.channel_cap = 16;
	p.listener_cap = 16;
	p.offer_cap = 64;
	assert_int_equal(ivsock_region_format(&f->rg, f->map, REGION, &p), 0);
	if (bad == BAD_SHORT)
		assert_int_equal(ftruncate(f->memfd, REGION / 2), 0);
	if (bad != BAD_UNSEALED)
		assert_int_equal(fcntl(f->memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
	f->lfd = listen_on(f->name);
	pthread_create(&f->th, NULL, fake_thread, f);
	return f;
}

static void fake_stop(struct fake *f)
{
	pthread_join(f->th, NULL);
	close(f->lfd);
	munmap(f->map, REGION);
	close(f->memfd);
	free(f);
}

static void test_bad_fds_refused(void **state)
{
	struct ivsock_agent_opts o = opts(1000);
	enum bad cases[] = { BAD_UNSEALED, BAD_SHORT, BAD_PIPE };

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int before = count_fds();
		struct fake *f = fake_start(cases[i]);
		struct ivsock_agent_conn c;

		assert_int_equal(ivsock_agent_connect_opts(f->name, &o, &c), -EBADFD);
		ivsock_agent_close(&c);
		fake_stop(f);
		assert_int_equal(count_fds(), before);
	}
}

static void test_peer_fd_must_be_eventfd(void **state)
{
	struct ivsock_agent_opts o = opts(1000);
	struct fake *f = fake_start(BAD_PEER_PIPE);
	struct ivsock_agent_conn c;
	int before;

	(void)state;
	assert_int_equal(ivsock_agent_connect_opts(f->name, &o, &c), 0);
	/* the fake closes its copy of the wait eventfd after sending it */
	before = count_fds();
	for (int i = 0; i < 200; i++) {
		usleep(5000);
		if (count_fds() == before)
			break;
		before = count_fds();
	}
	assert_int_equal(ivsock_agent_peer_fd(&c, 5, 0), -EBADFD);
	assert_int_equal(ivsock_doorbell_notify(c.db, 5, 1), -EBADFD);
	assert_int_equal(fds_settled(before), before);
	ivsock_agent_close(&c);
	fake_stop(f);
}

/* A late reply (seq lower than ours) is dropped, with its fds. */
static void test_stale_reply_dropped(void **state)
{
	int sv[2], efd = eventfd(0, EFD_CLOEXEC), fds[1] = { -1 }, nfds = -1, before;
	struct ivsock_msg_hdr rep;
	ssize_t n;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	before = count_fds();
	send_msg(sv[1], IVSOCK_AG_PEER_FD_REPLY, 4, 0, NULL, 0, &efd, 1);
	send_msg(sv[1], IVSOCK_AG_PEER_FD_REPLY, 5, 0, NULL, 0, &efd, 1);
	n = ivsock_agent_call_timeout(sv[0], IVSOCK_AG_PEER_FD, 5, NULL, 0,
				      IVSOCK_AG_PEER_FD_REPLY, &rep, sizeof(rep), fds, 1, &nfds, 500);
	assert_int_equal(n, (ssize_t)sizeof(rep));
	assert_int_equal(rep.seq, 5);
	assert_int_equal(nfds, 1);
	close(fds[0]);
	assert_int_equal(count_fds(), before);
	/* nothing more comes: a timeout, not a hang */
	n = ivsock_agent_call_timeout(sv[0], IVSOCK_AG_PEER_FD, 6, NULL, 0,
				      IVSOCK_AG_PEER_FD_REPLY, &rep, sizeof(rep), fds, 1, &nfds, 100);
	assert_int_equal(n, -ETIMEDOUT);
	close(sv[0]), close(sv[1]), close(efd);
}

/* ---------------- the doorbell cache ---------------- */

struct lz {
	int resolves;
	int fail;
	uint64_t tag;      /* what resolve reports */
	uint64_t current;  /* what same() compares with */
	int last_fd;
};

static int lz_resolve(void *arg, uint32_t peer, uint32_t vector, uint64_t *tag)
{
	struct lz *l = arg;

	(void)peer, (void)vector;
	l->resolves++;
	*tag = l->tag;
	if (l->fail)
		return l->fail;
	l->last_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	return l->last_fd;
}

static bool lz_same(void *arg, uint32_t peer, uint64_t tag)
{
	(void)peer;
	return ((struct lz *)arg)->current == tag;
}

static void test_cache_bounded_lru(void **state)
{
	struct lz l = { .tag = 1, .current = 1 };
	struct ivsock_evdb_lazy p = { .resolve = lz_resolve, .same = lz_same, .arg = &l, .cap = 4 };
	int base = count_fds();
	struct ivsock_doorbell *db = ivsock_evdb_new_lazy(-1, &p);
	struct ivsock_evdb_stats st;

	(void)state;
	for (uint32_t peer = 1; peer <= 100; peer++) {
		assert_int_equal(ivsock_doorbell_notify(db, peer, 0), 0);
		assert_true(count_fds() <= base + 4);
	}
	ivsock_evdb_get_stats(db, &st);
	assert_int_equal(st.entries, 4);
	assert_int_equal(st.evicted, 96);
	assert_int_equal(l.resolves, 100);
	/* the most recently used stay: 97..100 */
	l.resolves = 0;
	for (uint32_t peer = 97; peer <= 100; peer++)
		assert_int_equal(ivsock_doorbell_notify(db, peer, 0), 0);
	assert_int_equal(l.resolves, 0);
	/* keep 100 hot, bring in 5 more: 100 survives */
	for (uint32_t peer = 200; peer < 205; peer++) {
		assert_int_equal(ivsock_doorbell_notify(db, 100, 0), 0);
		assert_int_equal(ivsock_doorbell_notify(db, peer, 0), 0);
	}
	l.resolves = 0;
	assert_int_equal(ivsock_doorbell_notify(db, 100, 0), 0);
	assert_int_equal(l.resolves, 0);
	ivsock_doorbell_free(db);
	assert_int_equal(count_fds(), base);
}

static void test_cache_forgets_reused_peer(void **state)
{
	struct lz l = { .tag = 11, .current = 11 };
	struct ivsock_evdb_lazy p = { .resolve = lz_resolve, .same = lz_same, .arg = &l };
	int base = count_fds(), first, second;
	struct ivsock_doorbell *db = ivsock_evdb_new_lazy(-1, &p);
	struct ivsock_evdb_stats st;
	uint64_t v;

	(void)state;
	assert_int_equal(ivsock_doorbell_notify(db, 5, 0), 0);
	first = l.last_fd;
	assert_int_equal(ivsock_doorbell_notify(db, 5, 0), 0);
	assert_int_equal(l.resolves, 1);
	/* peer 5 is now someone else (its directory entry changed) */
	l.tag = l.current = 12;
	assert_int_equal(ivsock_doorbell_notify(db, 5, 0), 0);
	assert_int_equal(l.resolves, 2);
	second = l.last_fd;
	assert_int_equal(read(second, &v, sizeof(v)), (ssize_t)sizeof(v));
	ivsock_evdb_get_stats(db, &st);
	assert_int_equal(st.stale, 1);
	assert_int_equal(st.entries, 1);
	assert_int_equal(count_fds(), base + 1); /* the first fd was closed */
	(void)first;
	/* an fd that broke under us (closed behind our back) is forgotten */
	close(second);
	assert_int_equal(ivsock_doorbell_notify(db, 5, 0), -EBADF);
	assert_int_equal(ivsock_doorbell_notify(db, 5, 0), 0);
	assert_int_equal(l.resolves, 3);
	ivsock_doorbell_free(db);
	assert_int_equal(count_fds(), base);
}

static void test_cache_negative(void **state)
{
	struct lz l = { .fail = -ENOENT };
	struct ivsock_evdb_lazy p = { .resolve = lz_resolve, .same = lz_same, .arg = &l,
				      .neg_ms = 50 };
	struct ivsock_doorbell *db = ivsock_evdb_new_lazy(-1, &p);
	struct ivsock_evdb_stats st;

	(void)state;
	assert_int_equal(ivsock_doorbell_notify(db, 9, 0), -ENOENT);
	for (int i = 0; i < 100; i++)
		assert_int_equal(ivsock_doorbell_notify(db, 9, 0), -ENOENT);
	ivsock_evdb_get_stats(db, &st);
	/* asked at most a few times, not 101 (50 ms may pass on a slow box) */
	assert_true(l.resolves < 10);
	assert_true(st.neg_hits > 90);
	usleep(120 * 1000);
	l.fail = 0;
	assert_int_equal(ivsock_doorbell_notify(db, 9, 0), 0);
	ivsock_doorbell_free(db);
}

/* Through the agent client: the tag is the peer's directory slot word. */
static void test_conn_peer_id_reuse(void **state)
{
	struct ivsock_agent_opts o = opts(1000);
	struct fake *f = fake_start(GOOD_DIR);
	struct ivsock_agent_conn c;
	uint8_t uuid[16] = { 0 };
	int vm;

	(void)state;
	vm = ivsock_dir_add(&f->rg, 5, 2, "first", uuid);
	assert_true(vm >= 0);
	assert_int_equal(ivsock_agent_connect_opts(f->name, &o, &c), 0);
	assert_int_equal(ivsock_doorbell_notify(c.db, 5, 1), 0);
	assert_int_equal(ivsock_doorbell_notify(c.db, 5, 1), 0);
	assert_int_equal(f->peer_fd_asks, 1);
	/* the VM leaves; ivsockd gives peer ID 5 to a new VM */
	assert_int_equal(ivsock_dir_mark_dead(&f->rg, (uint32_t)vm), 0);
	assert_int_equal(ivsock_dir_remove(&f->rg, (uint32_t)vm), 0);
	assert_true(ivsock_dir_add(&f->rg, 5, 2, "second", uuid) >= 0);
	assert_int_equal(ivsock_doorbell_notify(c.db, 5, 1), 0);
	assert_int_equal(f->peer_fd_asks, 2);
	/* an unknown peer: asked once, then remembered as failed */
	f->peer_fail = true;
	assert_int_equal(ivsock_doorbell_notify(c.db, 77, 0), -ENOENT);
	assert_int_equal(ivsock_doorbell_notify(c.db, 77, 0), -ENOENT);
	assert_int_equal(f->peer_fd_asks, 3);
	ivsock_agent_close(&c);
	fake_stop(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_untrusted_listener_gets_nothing),
		cmocka_unit_test(test_silent_agent_times_out),
		cmocka_unit_test(test_backlog_full_times_out),
		cmocka_unit_test(test_refusal_notice),
		cmocka_unit_test(test_region_fd_checks),
		cmocka_unit_test(test_bad_fds_refused),
		cmocka_unit_test(test_peer_fd_must_be_eventfd),
		cmocka_unit_test(test_stale_reply_dropped),
		cmocka_unit_test(test_cache_bounded_lru),
		cmocka_unit_test(test_cache_forgets_reused_peer),
		cmocka_unit_test(test_cache_negative),
		cmocka_unit_test(test_conn_peer_id_reuse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
