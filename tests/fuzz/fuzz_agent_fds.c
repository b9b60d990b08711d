// SPDX-License-Identifier: MIT
/*
 * The shim's connection to an agent it cannot trust (ISSUE-8 #1): a fake
 * agent thread listens on a private abstract name and answers the real
 * client code (protocol/src/agent_client.c: ivsock_agent_connect, then
 * ivsock_agent_peer_fd and a doorbell ring through it) with what the
 * input says: HELLO_REPLY fields (backend, ids, region size, format id),
 * a wrong type/seq/status/length, a truncated packet, and 0..4 descriptors
 * of the wrong kind (pipe, eventfd, /dev/null, a socket, a regular file, a
 * memfd shorter than the region it claims, an empty memfd), and PEER_FD
 * replies with such descriptors too. The client then reads the region it
 * mapped as the shim would (directory, listeners, channels).
 * Checked: no crash (SIGBUS from a short mapping counts), no descriptor
 * leaked by a failed or a successful connect once closed, every call
 * returns (watchdog).
 * Known open (ISSUE-8 #1, xfail by default): "short-memfd" (an fd shorter
 * than region_size is mapped and read: SIGBUS), "silent-agent" (an agent
 * that never answers hangs ivsock_agent_connect), "peer-fd-sigpipe" (a
 * PEER_FD reply carrying a socket instead of an eventfd: the doorbell
 * write raises SIGPIPE in the program). With those ids removed
 * from IVSOCK_FUZZ_XFAIL the fake agent also sends short memfds and goes
 * silent.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "ivsock/agent_client.h"
#include "ivsock/directory.h"
#include "ivsock/listener.h"
#include "ivsock/msg.h"

#define FUZZ_XFAIL_DEFAULT ""
#include "scribble.h"

#include <signal.h>

/*
 * A shim that writes into a descriptor it was handed kills its program
 * with SIGPIPE when the "eventfd" is a socket or pipe whose reader is gone
 * (ivsock_evdb notify on a PEER_FD reply that was never an eventfd).
 */
static void on_sigpipe(int sig)
{
	static const char m[] = "fuzz invariant failed [peer-fd-sigpipe]: the client wrote "
				"into a received descriptor that is not an eventfd (SIGPIPE)\n";

	(void)sig;
	if (!fuzz_xfail("peer-fd-sigpipe", FUZZ_XFAIL_DEFAULT)) {
		(void)!write(2, m, sizeof(m) - 1);
		abort();
	}
}

#define REGION_SIZE 65536U

static int lsock = -1;
static char path[64];

struct script {
	uint8_t b[64];
	size_t n;
	bool allow_short, allow_silent;
};

static uint8_t sb(const struct script *s, unsigned i)
{
	return i < s->n ? s->b[i] : 0;
}

/* A memfd holding a formatted region of `size` bytes, truncated to `len`. */
static int region_fd(size_t size, size_t len, uint64_t *format_id)
{
	struct ivsock_region_params pr;
	struct ivsock_region rg;
	int fd = memfd_create("fuzz-region", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	void *m;

	FUZZ_ASSERT(fd >= 0);
	FUZZ_ASSERT(ftruncate(fd, (off_t)size) == 0);
	m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	FUZZ_ASSERT(m != MAP_FAILED);
	ivsock_region_params_single(&pr, 4096);
	pr.vm_cap = 2;
	pr.listener_cap = 4;
	pr.offer_cap = 4;
	pr.channel_cap = 4;
	FUZZ_ASSERT(ivsock_region_format(&rg, m, size, &pr) == 0);
	*format_id = rg.format_id;
	FUZZ_ASSERT(ivsock_dir_add(&rg, 10, 2, "vm0", NULL) == 0);
	munmap(m, size);
	if (len != size)
		FUZZ_ASSERT(ftruncate(fd, (off_t)len) == 0);
	return fd;
}

/* A descriptor of kind k (the good region fd is passed in). */
static int make_fd(const struct script *s, unsigned k, int good, uint64_t *fid)
{
	int p[2], fd;

	switch (k % 9) {
	case 0: return dup(good);
	case 1: return eventfd(0, EFD_CLOEXEC);
	case 2:
		FUZZ_ASSERT(pipe2(p, O_CLOEXEC) == 0);
		close(p[1]);
		return p[0];
	case 3: return open("/dev/null", O_RDWR | O_CLOEXEC);
	case 4:
		FUZZ_ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) == 0);
		close(p[1]);
		return p[0];
	case 5: /* a regular file with a valid region in it */
		fd = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
		if (fd >= 0) {
			int r = region_fd(REGION_SIZE, REGION_SIZE, fid);
			static uint8_t copy[REGION_SIZE];

			FUZZ_ASSERT(pread(r, copy, sizeof(copy), 0) == (ssize_t)sizeof(copy));
			FUZZ_ASSERT(pwrite(fd, copy, sizeof(copy), 0) == (ssize_t)sizeof(copy));
			close(r);
			return fd;
		}
		return eventfd(0, EFD_CLOEXEC);
	case 6:
		if (s->allow_short)
			return region_fd(REGION_SIZE, 4096, fid);
		return dup(good);
	case 7:
		if (s->allow_short)
			return region_fd(REGION_SIZE, 0, fid);
		return eventfd(0, EFD_CLOEXEC);
	default:
		return open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	}
}

static void send_reply(int c, const void *p, size_t len, const int *fds, int nfds)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(4 * sizeof(int))];
	} ctl;
	struct iovec iov = { (void *)p, len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (nfds) {
		struct cmsghdr *cm;

		memset(&ctl, 0, sizeof(ctl));
		msg.msg_control = ctl.buf;
		msg.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
		memcpy(CMSG_DATA(cm), fds, (size_t)nfds * sizeof(int));
	}
	(void)sendmsg(c, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static ssize_t recv_req(int c, void *buf, size_t cap, int ms)
{
	struct pollfd p = { .fd = c, .events = POLLIN };

	if (poll(&p, 1, ms) <= 0)
		return -1;
	return recv(c, buf, cap, MSG_DONTWAIT);
}

static void *agent_main(void *arg)
{
	const struct script *s = arg;
	struct {
		struct ivsock_msg_hdr h;
		struct ivsock_ag_hello_reply r;
	} rep;
	uint8_t req[256];
	struct ivsock_msg_hdr rh;
	struct pollfd p = { .fd = lsock, .events = POLLIN };
	uint64_t fid = 0, fid2 = 0;
	int c, good, fds[4], nfds, i, round;
	size_t len;
	ssize_t n;

	if (poll(&p, 1, 2000) <= 0)
		return NULL;
	c = accept4(lsock, NULL, NULL, SOCK_CLOEXEC);
	if (c < 0)
		return NULL;
	good = region_fd(REGION_SIZE, REGION_SIZE, &fid);
	n = recv_req(c, req, sizeof(req), 2000);
	if (n < (ssize_t)sizeof(rh))
		goto out;
	memcpy(&rh, req, sizeof(rh));
	if (s->allow_silent && sb(s, 0) == 0x5a) {
		/* silent: hold the connection until the client hangs up */
		(void)recv_req(c, req, sizeof(req), 60000);
		goto out;
	}
	memset(&rep, 0, sizeof(rep));
	ivsock_msg_init(&rep.h, (sb(s, 1) & 7) == 7 ? sb(s, 2) : IVSOCK_AG_HELLO_REPLY,
			sizeof(rep.r), (sb(s, 1) & 0x18) == 0x18 ? rh.seq + 1 : rh.seq);
	rep.h.status = (sb(s, 1) & 0x60) == 0x60 ? -EACCES : 0;
	rep.r.backend = (sb(s, 3) & 3) == 3 ? sb(s, 4) : IVSOCK_BACKEND_SERVER;
	rep.r.vm_index = (sb(s, 3) & 4) ? sb(s, 5) : 0;
	rep.r.peer_id = 10;
	rep.r.client_id = (sb(s, 3) & 8) ? sb(s, 6) : 1;
	rep.r.vector = 1;
	switch ((sb(s, 3) >> 4) & 7) {
	case 1: rep.r.region_size = 4096; break;
	case 2: rep.r.region_size = 2 * REGION_SIZE; break;
	case 3: rep.r.region_size = (uint64_t)sb(s, 7) << 12; break;
	case 4: rep.r.region_size = 1ULL << 40; break;
	default: rep.r.region_size = REGION_SIZE; break;
	}
	rep.r.format_id = (sb(s, 3) & 0x80) ? fid + 1 : fid;
	len = sizeof(rep);
	if ((sb(s, 8) & 3) == 3)
		len = sb(s, 9) % sizeof(rep);         /* truncated packet */
	if ((sb(s, 8) & 0xc) == 0xc)
		rep.h.len = sb(s, 10);                /* lies about its length */
	nfds = (sb(s, 11) & 0x80) ? sb(s, 11) % 5 : 2;
	for (i = 0; i < nfds; i++) {
		uint8_t k = sb(s, 12 + (unsigned)i);

		fds[i] = make_fd(s, (k & 0x80) ? k : (i == 0 ? 0 : 1), good, &fid2);
	}
	send_reply(c, &rep, len, fds, nfds);
	for (i = 0; i < nfds; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	/* PEER_FD requests until the client hangs up. */
	for (round = 0; round < 8; round++) {
		struct ivsock_msg_hdr h;
		int fd;

		n = recv_req(c, req, sizeof(req), 2000);
		if (n < (ssize_t)sizeof(rh))
			break;
		memcpy(&rh, req, sizeof(rh));
		ivsock_msg_init(&h, IVSOCK_AG_PEER_FD_REPLY, 0, rh.seq);
		h.status = (sb(s, 20 + (unsigned)round) & 0x70) == 0x70 ? -ENOENT : 0;
		nfds = sb(s, 20 + (unsigned)round) & 3;
		fd = make_fd(s, sb(s, 30 + (unsigned)round) | 0x80, good, &fid2);
		if (nfds == 3) {
			int two[2] = { fd, fd };

			send_reply(c, &h, sizeof(h), two, 2);
		} else {
			send_reply(c, &h, (sb(s, 20 + (unsigned)round) & 4) ? 5 : sizeof(h), &fd,
				   nfds ? 1 : 0);
		}
		if (fd >= 0)
			close(fd);
	}
out:
	close(good);
	close(c);
	return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	static struct script s;
	struct ivsock_agent_conn conn;
	struct ivsock_vm_info info;
	pthread_t th;
	size_t got;
	const uint8_t *p;
	int before, rc, i;

	if (lsock < 0) {
		struct sockaddr_un sa;
		socklen_t sl;

		snprintf(path, sizeof(path), "@ivsock-fuzz-agent-%d", (int)getpid());
		FUZZ_ASSERT(ivsock_agent_sockaddr(path, &sa, &sl) == 0);
		lsock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		FUZZ_ASSERT(lsock >= 0);
		FUZZ_ASSERT(bind(lsock, (struct sockaddr *)&sa, sl) == 0);
		FUZZ_ASSERT(listen(lsock, 4) == 0);
		signal(SIGPIPE, on_sigpipe);
		/* the watchdog thread exists before the first fd count */
		fuzz_wd_arm("init");
		fuzz_wd_disarm();
	}
	memset(&s, 0, sizeof(s));
	p = fuzz_bytes(&in, sizeof(s.b), &got);
	memcpy(s.b, p, got);
	s.n = got;
	s.allow_short = !fuzz_xfail("short-memfd", FUZZ_XFAIL_DEFAULT);
	s.allow_silent = !fuzz_xfail("silent-agent", FUZZ_XFAIL_DEFAULT);

	before = fuzz_open_fds();
	FUZZ_ASSERT(pthread_create(&th, NULL, agent_main, &s) == 0);
	rc = WD(ivsock_agent_connect(path, &conn));
	if (rc == 0) {
		/* Read the region as the shim does. */
		for (i = 0; i < (int)conn.region.vm_cap; i++)
			(void)WD(ivsock_dir_read(&conn.region, (uint32_t)i, &info));
		(void)WD(ivsock_dir_find_peer(&conn.region, 10));
		(void)WD(ivsock_listener_find(&conn.region, 0, &(struct ivsock_addr){ .family = 4 }, 80));
		(void)WD(ivsock_block_pool_used(&conn.region, 0));
		for (i = 0; i < 3; i++) {
			int fd = WD(ivsock_agent_peer_fd(&conn, 11, (uint32_t)i));

			if (fd >= 0)
				close(fd);
		}
		(void)WD(ivsock_doorbell_notify(conn.db, 11, 1));
		(void)WD(ivsock_doorbell_notify(conn.db, 12, 1));
	}
	WDV(ivsock_agent_close(&conn));
	pthread_join(th, NULL);
	fuzz_check_no_fd_leak(before);
	return 0;
}
