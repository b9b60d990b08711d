// SPDX-License-Identifier: MIT
/*
 * broker-hostile: a client of ivsock-agent that speaks the broker protocol
 * (docs/broker.md) directly and misbehaves, for tests/integration/
 * broker-hostile.sh. It maps only what HELLO hands out (the tables,
 * read-only) and checks every answer; each check prints "ok: ..." or
 * "FAIL: ..."; the exit status is the number of failures (0: all refused as
 * they must be).
 *
 *   broker-hostile victim SRCIP DPORT
 *       find the live connection to port DPORT of another uid in the
 *       tables; CLOSE / ABANDON / ATTACH naming it, without a socket and
 *       with a socket of our own -> refused (-EPERM; CLOSE is one way: the
 *       channel must not move); stale generations -> -ESTALE; ACCEPT with
 *       sockets that are not the accepted one (listening, connected
 *       elsewhere, UDP, UNIX, a pipe) -> error, no offer taken; OPEN with a
 *       listening / connected / UDP socket, to a destination that is not a
 *       VM, to no listener -> error, nothing claimed.
 *   broker-hostile offer SRCIP DPORT
 *       wait for a pending offer to port DPORT (its server has not
 *       accepted yet); ACCEPT with every socket we have (none is the
 *       accepted one), ABANDON / ATTACH / CLOSE naming its channel -> all
 *       refused, the offer still posted, the channel still OFFERED.
 *   broker-hostile protocol
 *       requests before HELLO (-ENOTCONN, nothing done), extra fds on
 *       requests and on one-way messages, unknown types, and wrong payload
 *       sizes (the agent hangs up on us, and answers the next client).
 *   broker-hostile flood SRCIP N CLASS
 *       register a listener on SRCIP, then N OPENs to it from fresh sockets
 *       (size class CLASS, -1: default); prints "flood ok=A edquot=B
 *       other=C"; then waits for a line on stdin (the test checks that
 *       another uid still gets channels) and exits, holding everything.
 *   broker-hostile overcommit SRCIP N CLASS
 *       the same, but first one connection to ourselves (OPEN, connect,
 *       ACCEPT), its connector end CLOSEd, and CLOSEd again before each
 *       OPEN: a CLOSE of an end already closed must not give the uid its
 *       quota back (prints "overcommit ok=...").
 *   broker-hostile track SRCIP N
 *       TRACK (a connection on TCP as a TCP entry) refused for sockets that
 *       are not an established connection to the address named; another
 *       client's CLOSE / ATTACH of the entry refused; the owner's CLOSE and
 *       exit free it; N fresh connections tracked end in the per-uid cap
 *       (prints "track ok=A capped=B other=C").
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "ivsock/agent_client.h"
#include "ivsock/channel.h"
#include "ivsock/layout.h"
#include "ivsock/msg.h"
#include "ivsock/offer.h"

static int failures;

#define CHECK(cond, ...)                                       \
	do {                                                   \
		if (cond) {                                    \
			printf("ok: ");                        \
		} else {                                       \
			printf("FAIL: ");                      \
			failures++;                            \
		}                                              \
		printf(__VA_ARGS__);                           \
		printf("\n");                                  \
		fflush(stdout);                                \
	} while (0)

static void die(const char *what, int err)
{
	fprintf(stderr, "broker-hostile: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(100);
}

/* ---- raw requests: any type, payload and fds ---- */

static int raw_send(int sock, uint16_t type, uint32_t seq, const void *p, uint32_t len,
		    uint32_t hdr_len, const int *fds, int nfds)
{
	struct ivsock_msg_hdr h;
	struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)p, len } };
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = len ? 2 : 1 };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(8 * sizeof(int))];
	} ctl;
	ssize_t n;

	ivsock_msg_init(&h, type, hdr_len, seq);
	if (nfds) {
		struct cmsghdr *c;

		memset(&ctl, 0, sizeof(ctl));
		msg.msg_control = ctl.buf;
		msg.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
	}
	n = sendmsg(sock, &msg, MSG_NOSIGNAL);
	return n < 0 ? -errno : 0;
}

/* Wait for the reply of seq: @return its status, 1 if the agent said
 * nothing within timeout_ms, -ECONNRESET if it hung up. Received fds are
 * counted in *nfds and closed. */
static int raw_reply(int sock, uint32_t seq, int timeout_ms, uint16_t *type, int *nfds)
{
	static uint8_t buf[IVSOCK_MSG_MAX];

	if (nfds)
		*nfds = 0;
	for (;;) {
		struct pollfd pf = { sock, POLLIN, 0 };
		union {
			struct cmsghdr h;
			char b[CMSG_SPACE(4 * sizeof(int))];
		} ctl;
		struct iovec iov = { buf, sizeof(buf) };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
				      .msg_control = ctl.b, .msg_controllen = sizeof(ctl.b) };
		struct ivsock_msg_hdr h;
		struct cmsghdr *cm;
		ssize_t n;

		if (poll(&pf, 1, timeout_ms) != 1)
			return 1;
		n = recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0)
			return -ECONNRESET;
		for (cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
			size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);

			for (size_t i = 0; i < k; i++) {
				int f;

				memcpy(&f, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
				close(f);
				if (nfds)
					(*nfds)++;
			}
		}
		if ((size_t)n < sizeof(h))
			return -EPROTO;
		memcpy(&h, buf, sizeof(h));
		if (h.seq != seq)
			continue;
		if (type)
			*type = h.type;
		return h.status;
	}
}

/* One raw request on a HELLO'd connection (the library's own seq), with
 * up to one socket and `extra` eventfds attached. */
static int req(struct ivsock_agent_conn *c, uint16_t type, const void *p, uint32_t len, int sock,
	       int extra, bool want_reply)
{
	int fds[8], n = 0, rc;
	uint32_t seq = ++c->seq;

	if (sock >= 0)
		fds[n++] = sock;
	for (int i = 0; i < extra && n < 8; i++)
		fds[n++] = eventfd(0, EFD_CLOEXEC);
	rc = raw_send(c->sock, type, seq, p, len, len, fds, n);
	for (int i = sock >= 0; i < n; i++)
		close(fds[i]);
	if (rc < 0)
		return rc;
	return want_reply ? raw_reply(c->sock, seq, 2000, NULL, NULL) : 0;
}

static int chan_req(struct ivsock_agent_conn *c, uint16_t type, uint32_t idx, uint32_t gen,
		    uint32_t side, int sock)
{
	struct ivsock_ag_chan_ref r = { .channel = idx, .channel_gen = gen, .side = side };

	return req(c, type, &r, sizeof(r), sock, 0, type != IVSOCK_AG_CLOSE);
}

/* ---- sockets ---- */

static void sa4(struct sockaddr_in *a, const char *ip, uint16_t port)
{
	memset(a, 0, sizeof(*a));
	a->sin_family = AF_INET;
	a->sin_port = htons(port);
	if (inet_pton(AF_INET, ip, &a->sin_addr) != 1)
		die(ip, EINVAL);
}

static int tcp_bound(const char *ip)
{
	struct sockaddr_in a;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	sa4(&a, ip, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("bind", errno);
	return fd;
}

static uint16_t port_of(int fd)
{
	struct sockaddr_in a;
	socklen_t l = sizeof(a);

	getsockname(fd, (struct sockaddr *)&a, &l);
	return ntohs(a.sin_port);
}

static int tcp_listening(const char *ip)
{
	int fd = tcp_bound(ip);

	if (listen(fd, 64) < 0)
		die("listen", errno);
	return fd;
}

/* A connected pair over loopback: *acc the accepted end. */
static int tcp_pair(const char *ip, int *acc)
{
	int l = tcp_listening(ip), c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a;

	sa4(&a, ip, port_of(l));
	if (connect(c, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("connect", errno);
	*acc = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	if (*acc < 0)
		die("accept", errno);
	close(l);
	return c;
}

/* ---- the tables, read-only ---- */

struct table_sum {
	uint32_t chans, offers, blocks;
};

static void table_sum(const struct ivsock_region *rg, uint8_t vm, struct table_sum *s)
{
	memset(s, 0, sizeof(*s));
	for (uint32_t i = 0; i < rg->channel_cap; i++)
		s->chans += ivsock_slot_get(&rg->channels[i].slot).state != IVSOCK_SLOT_FREE;
	for (uint32_t i = 0; i < rg->offer_cap; i++)
		s->offers += ivsock_slot_get(&rg->offers[i].slot).state != IVSOCK_SLOT_FREE;
	s->blocks = ivsock_block_pool_used(rg, vm);
}

struct chan_snap {
	uint64_t slot;
	uint32_t flags[2];
};

static void chan_snap(const struct ivsock_region *rg, uint32_t i, struct chan_snap *s)
{
	s->slot = atomic_load(&rg->channels[i].slot);
	s->flags[0] = atomic_load(&rg->channels[i].end[0].flags);
	s->flags[1] = atomic_load(&rg->channels[i].end[1].flags);
}

static bool chan_same(const struct ivsock_region *rg, uint32_t i, const struct chan_snap *s)
{
	struct chan_snap now;

	chan_snap(rg, i, &now);
	return now.slot == s->slot && now.flags[0] == s->flags[0] && now.flags[1] == s->flags[1];
}

static void connect_or_die(struct ivsock_agent_conn *c)
{
	int rc = ivsock_agent_connect(NULL, c);

	if (rc < 0)
		die("connect to the agent", rc);
}

/* ---- victim ---- */

static int victim(const char *srcip, uint16_t dport)
{
	struct ivsock_agent_conn c;
	struct ivsock_region *rg;
	struct chan_snap before;
	struct table_sum s0, s1;
	uint32_t idx = 0, gen = 0;
	int found = -1, rc, own, acc, conn, side;

	connect_or_die(&c);
	rg = &c.region;
	/* the victim's connection: CONNECTED, to dport, not our uid */
	for (int tries = 0; tries < 200 && found < 0; tries++) {
		for (uint32_t i = 0; i < rg->channel_cap; i++) {
			struct ivsock_slot_val v = ivsock_slot_get(&rg->channels[i].slot);

			if (v.state == IVSOCK_CHAN_CONNECTED &&
			    rg->channels[i].tuple.dport == dport &&
			    rg->channels[i].end[0].uid != c.info.uid) {
				found = (int)i;
				idx = i;
				gen = v.gen;
				break;
			}
		}
		if (found < 0)
			usleep(20000);
	}
	if (found < 0) {
		CHECK(0, "a live connection of another uid to port %u in the tables", dport);
		return 1;
	}
	printf("victim: channel %u gen %u (uid %u -> uid %u), we are uid %u client %u\n", idx, gen,
	       rg->channels[idx].end[0].uid, rg->channels[idx].end[1].uid, c.info.uid,
	       c.info.client_id);
	chan_snap(rg, idx, &before);
	own = tcp_bound(srcip);

	for (side = 0; side < 2; side++) {
		/* CLOSE is one way: a STATUS after it proves the agent read it */
		chan_req(&c, IVSOCK_AG_CLOSE, idx, gen, (uint32_t)side, -1);
		chan_req(&c, IVSOCK_AG_CLOSE, idx, gen, (uint32_t)side, own);
		req(&c, IVSOCK_AG_STATUS, NULL, 0, -1, 0, true);
		CHECK(chan_same(rg, idx, &before), "CLOSE of the victim's end %d (no socket, "
		      "our socket) leaves it alone", side);
		rc = chan_req(&c, IVSOCK_AG_ABANDON, idx, gen, (uint32_t)side, -1);
		CHECK(rc == (side ? -EINVAL : -EPERM), "ABANDON of the victim's end %d, no socket: %d",
		      side, rc);
		rc = chan_req(&c, IVSOCK_AG_ABANDON, idx, gen, (uint32_t)side, own);
		CHECK(rc == (side ? -EINVAL : -EPERM), "ABANDON of the victim's end %d, our socket: "
		      "%d", side, rc);
		rc = chan_req(&c, IVSOCK_AG_ATTACH, idx, gen, (uint32_t)side, -1);
		CHECK(rc == -EBADF, "ATTACH to the victim's end %d without a socket: %d", side, rc);
		rc = chan_req(&c, IVSOCK_AG_ATTACH, idx, gen, (uint32_t)side, own);
		CHECK(rc == -EPERM, "ATTACH to the victim's end %d with our socket: %d", side, rc);
		/* stale generations */
		rc = chan_req(&c, IVSOCK_AG_ATTACH, idx, gen + 1, (uint32_t)side, own);
		CHECK(rc == -ESTALE, "ATTACH with generation + 1: %d", rc);
		rc = chan_req(&c, IVSOCK_AG_ATTACH, idx, gen - 1, (uint32_t)side, own);
		CHECK(rc == -ESTALE, "ATTACH with generation - 1: %d", rc);
		rc = chan_req(&c, IVSOCK_AG_ABANDON, idx, gen + 1, 0, own);
		CHECK(rc == -ESTALE, "ABANDON with generation + 1: %d", rc);
		chan_req(&c, IVSOCK_AG_CLOSE, idx, gen + 1, (uint32_t)side, -1);
		chan_req(&c, IVSOCK_AG_CLOSE, idx, gen - 1, (uint32_t)side, own);
		req(&c, IVSOCK_AG_STATUS, NULL, 0, -1, 0, true);
		CHECK(chan_same(rg, idx, &before), "CLOSE with stale generations leaves it alone");
	}
	/* out of range */
	rc = chan_req(&c, IVSOCK_AG_ATTACH, rg->channel_cap, gen, 0, own);
	CHECK(rc == -EINVAL, "ATTACH to channel %u (out of range): %d", rg->channel_cap, rc);
	rc = chan_req(&c, IVSOCK_AG_ATTACH, idx, gen, 7, own);
	CHECK(rc == -EINVAL, "ATTACH to side 7: %d", rc);

	/* ACCEPT with what is not the accepted socket */
	table_sum(rg, (uint8_t)c.info.vm_index, &s0);
	{
		int lis = tcp_listening(srcip), udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		int ux[2], pp[2];

		conn = tcp_pair(srcip, &acc);
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ux) < 0 ||
		    pipe2(pp, O_CLOEXEC) < 0)
			die("socketpair", errno);
		rc = req(&c, IVSOCK_AG_ACCEPT, NULL, 0, lis, 0, true);
		CHECK(rc == -EINVAL, "ACCEPT with a listening socket: %d", rc);
		rc = req(&c, IVSOCK_AG_ACCEPT, NULL, 0, conn, 0, true);
		CHECK(rc == -ENOENT || rc == -EACCES, "ACCEPT with a socket connected elsewhere "
		      "(connector side): %d", rc);
		rc = req(&c, IVSOCK_AG_ACCEPT, NULL, 0, acc, 0, true);
		CHECK(rc == -ENOENT || rc == -EACCES, "ACCEPT with an accepted socket of an "
		      "unregistered listener: %d", rc);
		{
			/* our own registered listener, a plain connection to it
			 * (no OPEN): there is no offer to take */
			struct sockaddr_in a;
			uint32_t li, lg;
			int cc = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), aa;

			rc = ivsock_agent_listen(&c, lis, &li, &lg);
			CHECK(rc == 0, "LISTEN on our own socket: %d", rc);
			sa4(&a, srcip, port_of(lis));
			if (connect(cc, (struct sockaddr *)&a, sizeof(a)) < 0)
				die("connect", errno);
			aa = accept4(lis, NULL, NULL, SOCK_CLOEXEC);
			rc = req(&c, IVSOCK_AG_ACCEPT, NULL, 0, aa, 0, true);
			CHECK(rc == -ENOENT, "ACCEPT with an accepted socket that has no offer: %d",
			      rc);
			rc = req(&c, IVSOCK_AG_ACCEPT, NULL, 0, cc, 0, true);
			CHECK(rc == -ENOENT || rc == -EACCES, "ACCEPT with its connector side: %d",
			      rc);
			close(aa);
			close(cc);
			{
				/* PORT names the socket of its OPEN (cookie): with
				 * another connecting socket it is refused and the
				 * channel abandoned, no offer under that socket's
				 * 4-tuple; with the right one the connection is
				 * accepted (the control) */
				struct ivsock_ag_chan r, ra;
				struct ivsock_addr dst;
				uint16_t p;
				int m = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
				int x = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), ax, wfd = -1;

				ivsock_addr_from_sockaddr(&dst, &p, (struct sockaddr *)&a, sizeof(a));
				rc = ivsock_agent_open(&c, m, &dst, p, IVSOCK_AG_CLASS_DEFAULT,
						       IVSOCK_AG_OPEN_MARK, &r, &wfd);
				CHECK(rc == 0, "OPEN MARK: %d", rc);
				if (wfd >= 0)
					close(wfd);
				if (connect(x, (struct sockaddr *)&a, sizeof(a)) < 0)
					die("connect", errno);
				rc = ivsock_agent_port(&c, x, r.channel, r.channel_gen);
				CHECK(rc == 0, "PORT sent: %d", rc);
				ax = accept4(lis, NULL, NULL, SOCK_CLOEXEC);
				rc = req(&c, IVSOCK_AG_ACCEPT, NULL, 0, ax, 0, true);
				CHECK(rc == -ENOENT, "PORT with another socket: no offer for it: %d",
				      rc);
				if (connect(m, (struct sockaddr *)&a, sizeof(a)) < 0)
					die("connect", errno);
				ivsock_agent_port(&c, m, r.channel, r.channel_gen);
				close(ax);
				ax = accept4(lis, NULL, NULL, SOCK_CLOEXEC);
				rc = req(&c, IVSOCK_AG_ACCEPT, NULL, 0, ax, 0, true);
				CHECK(rc == -ENOENT, "PORT on the abandoned channel: no offer: %d",
				      rc);
				ivsock_agent_close_end(&c, -1, r.channel, r.channel_gen,
						       IVSOCK_SIDE_CONNECTOR, false);
				close(ax);
				close(x);
				close(m);
				m = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
				rc = ivsock_agent_open(&c, m, &dst, p, IVSOCK_AG_CLASS_DEFAULT,
						       IVSOCK_AG_OPEN_MARK, &r, &wfd);
				if (wfd >= 0)
					close(wfd);
				if (rc == 0 && connect(m, (struct sockaddr *)&a, sizeof(a)) == 0)
					ivsock_agent_port(&c, m, r.channel, r.channel_gen);
				ax = accept4(lis, NULL, NULL, SOCK_CLOEXEC);
				rc = ivsock_agent_accept(&c, ax, &ra, &wfd);
				CHECK(rc == 0, "OPEN MARK, connect, PORT with its socket: accepted: %d",
				      rc);
				if (wfd >= 0)
					close(wfd);
				if (rc == 0)
					ivsock_agent_close_end(&c, -1, ra.channel, ra.channel_gen,
							       IVSOCK_SIDE_ACCEPTOR, false);
				ivsock_agent_close_end(&c, -1, r.channel, r.channel_gen,
						       IVSOCK_SIDE_CONNECTOR, false);
				close(ax);
				close(m);
			}
			ivsock_agent_unlisten(&c, li, lg);
		}
		rc = req(&c, IVSOCK_AG_ACCEPT, NULL, 0, own, 0, true);
		CHECK(rc == -EINVAL, "ACCEPT with a bound, unconnected socket: %d", rc);
		rc = req(&c, IVSOCK_AG_ACCEPT, NULL, 0, udp, 0, true);
		CHECK(rc == -EPROTONOSUPPORT, "ACCEPT with a UDP socket: %d", rc);
		rc = req(&c, IVSOCK_AG_ACCEPT, NULL, 0, ux[0], 0, true);
		CHECK(rc == -EPROTONOSUPPORT, "ACCEPT with a UNIX socket: %d", rc);
		rc = req(&c, IVSOCK_AG_ACCEPT, NULL, 0, pp[0], 0, true);
		CHECK(rc == -ENOTSOCK, "ACCEPT with a pipe: %d", rc);
		rc = req(&c, IVSOCK_AG_ACCEPT, NULL, 0, -1, 0, true);
		CHECK(rc == -EBADF, "ACCEPT without a socket: %d", rc);

		/* OPEN with the wrong sockets and destinations */
		{
			struct ivsock_ag_open o = { .size_class = IVSOCK_AG_CLASS_DEFAULT };
			struct sockaddr_in d;
			uint16_t p;
			int fresh;

			sa4(&d, srcip, port_of(lis));
			ivsock_addr_from_sockaddr(&o.dst, &p, (struct sockaddr *)&d, sizeof(d));
			o.dport = p;
			rc = req(&c, IVSOCK_AG_OPEN, &o, sizeof(o), lis, 0, true);
			CHECK(rc == -EINVAL, "OPEN with a listening socket: %d", rc);
			rc = req(&c, IVSOCK_AG_OPEN, &o, sizeof(o), conn, 0, true);
			CHECK(rc == -EINVAL, "OPEN with a connected socket: %d", rc);
			rc = req(&c, IVSOCK_AG_OPEN, &o, sizeof(o), udp, 0, true);
			CHECK(rc == -EPROTONOSUPPORT, "OPEN with a UDP socket: %d", rc);
			rc = req(&c, IVSOCK_AG_OPEN, &o, sizeof(o), ux[0], 0, true);
			CHECK(rc == -EPROTONOSUPPORT, "OPEN with a UNIX socket: %d", rc);
			rc = req(&c, IVSOCK_AG_OPEN, &o, sizeof(o), -1, 0, true);
			CHECK(rc == -EBADF, "OPEN without a socket: %d", rc);
			fresh = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
			rc = req(&c, IVSOCK_AG_OPEN, &o, sizeof(o), fresh, 0, true);
			CHECK(rc == -EINVAL, "OPEN with an unbound socket: %d", rc);
			/* "I connect it next": only a socket not connected yet */
			o.flags = IVSOCK_AG_OPEN_MARK;
			rc = req(&c, IVSOCK_AG_OPEN, &o, sizeof(o), conn, 0, true);
			CHECK(rc == -EINVAL, "OPEN MARK with a connected socket: %d", rc);
			rc = req(&c, IVSOCK_AG_OPEN, &o, sizeof(o), lis, 0, true);
			CHECK(rc == -EINVAL, "OPEN MARK with a listening socket: %d", rc);
			o.flags = 0;
			close(fresh);
			rc = req(&c, IVSOCK_AG_OPEN, &o, sizeof(o), own, 0, true);
			CHECK(rc == -ECONNREFUSED, "OPEN to a port nobody registered: %d", rc);
			sa4(&d, "192.0.2.1", 80);
			ivsock_addr_from_sockaddr(&o.dst, &p, (struct sockaddr *)&d, sizeof(d));
			o.dport = 80;
			rc = req(&c, IVSOCK_AG_OPEN, &o, sizeof(o), own, 0, true);
			CHECK(rc == -EHOSTUNREACH, "OPEN to 192.0.2.1 (not a VM): %d", rc);
			o.flags = 0x8000;
			rc = req(&c, IVSOCK_AG_OPEN, &o, sizeof(o), own, 0, true);
			CHECK(rc == -EINVAL, "OPEN with reserved bits: %d", rc);
		}
		close(lis);
		close(udp);
		close(ux[0]);
		close(ux[1]);
		close(pp[0]);
		close(pp[1]);
		close(conn);
		close(acc);
	}
	table_sum(rg, (uint8_t)c.info.vm_index, &s1);
	CHECK(s0.chans == s1.chans && s0.offers == s1.offers && s0.blocks == s1.blocks,
	      "nothing claimed or taken: channels %u -> %u, offers %u -> %u, blocks %u -> %u",
	      s0.chans, s1.chans, s0.offers, s1.offers, s0.blocks, s1.blocks);
	CHECK(chan_same(rg, idx, &before), "the victim's channel did not move");
	close(own);
	ivsock_agent_close(&c);
	return failures;
}

/* ---- a victim's offer, pending while its server has not accepted yet ---- */

static int offer(const char *srcip, uint16_t dport)
{
	struct ivsock_agent_conn c;
	struct ivsock_region *rg;
	struct chan_snap before;
	uint64_t oslot = 0;
	uint32_t oi = 0, idx = 0, gen = 0;
	int found = 0, rc, own, lis, conn, acc, udp, ux[2], pp[2];

	connect_or_die(&c);
	rg = &c.region;
	for (int tries = 0; tries < 250 && !found; tries++) {
		for (uint32_t i = 0; i < rg->offer_cap && !found; i++) {
			struct ivsock_slot_val v = ivsock_slot_get(&rg->offers[i].slot);

			if (v.state == IVSOCK_SLOT_FREE || rg->offers[i].tuple.dport != dport)
				continue;
			oi = i;
			oslot = atomic_load(&rg->offers[i].slot);
			idx = rg->offers[i].channel;
			if (idx >= rg->channel_cap)
				continue;
			gen = ivsock_slot_get(&rg->channels[idx].slot).gen;
			found = 1;
		}
		if (!found)
			usleep(20000);
	}
	if (!found) {
		CHECK(0, "a pending offer to port %u in the tables", dport);
		return 1;
	}
	printf("offer %u: channel %u gen %u, state %u, uid %u; we are uid %u\n", oi, idx, gen,
	       ivsock_slot_get(&rg->channels[idx].slot).state, rg->channels[idx].end[0].uid,
	       c.info.uid);
	chan_snap(rg, idx, &before);
	own = tcp_bound(srcip);
	lis = tcp_listening(srcip);
	udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	conn = tcp_pair(srcip, &acc);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ux) < 0 || pipe2(pp, O_CLOEXEC) < 0)
		die("socketpair", errno);
	{
		const int socks[] = { lis, conn, acc, own, udp, ux[0], pp[0], -1 };
		const char *what[] = { "listening", "connected elsewhere", "accepted elsewhere",
				       "bound", "UDP", "UNIX", "pipe", "no" };

		for (unsigned k = 0; k < sizeof(socks) / sizeof(socks[0]); k++) {
			rc = req(&c, IVSOCK_AG_ACCEPT, NULL, 0, socks[k], 0, true);
			CHECK(rc < 0, "ACCEPT with a %s socket: %d", what[k], rc);
		}
	}
	rc = chan_req(&c, IVSOCK_AG_ABANDON, idx, gen, 0, -1);
	CHECK(rc == -EPERM, "ABANDON of the pending connection, no socket: %d", rc);
	rc = chan_req(&c, IVSOCK_AG_ABANDON, idx, gen, 0, own);
	CHECK(rc == -EPERM, "ABANDON of the pending connection, our socket: %d", rc);
	rc = chan_req(&c, IVSOCK_AG_ATTACH, idx, gen, 0, own);
	CHECK(rc == -EPERM, "ATTACH to the pending connection: %d", rc);
	for (int side = 0; side < 2; side++) {
		chan_req(&c, IVSOCK_AG_CLOSE, idx, gen, (uint32_t)side, -1);
		chan_req(&c, IVSOCK_AG_CLOSE, idx, gen, (uint32_t)side, own);
	}
	req(&c, IVSOCK_AG_STATUS, NULL, 0, -1, 0, true);
	CHECK(atomic_load(&rg->offers[oi].slot) == oslot, "the offer is still posted");
	CHECK(chan_same(rg, idx, &before), "the pending connection did not move");
	close(own);
	close(lis);
	close(udp);
	close(conn);
	close(acc);
	close(ux[0]);
	close(ux[1]);
	close(pp[0]);
	close(pp[1]);
	ivsock_agent_close(&c);
	return failures;
}

/* ---- protocol abuse ---- */

static int protocol(void)
{
	struct ivsock_agent_conn c;
	struct ivsock_ag_chan_ref r = { 0 };
	struct ivsock_ag_open o = { .size_class = IVSOCK_AG_CLASS_DEFAULT };
	char *json = NULL;
	int s, rc, fds[3], nfds;
	uint16_t type;

	/* before HELLO: every broker request gets -ENOTCONN, nothing more */
	s = ivsock_agent_dial(NULL);
	if (s < 0)
		die("dial", s);
	fds[0] = tcp_bound("127.0.0.1");
	rc = raw_send(s, IVSOCK_AG_OPEN, 1, &o, sizeof(o), sizeof(o), fds, 1);
	rc = rc ? rc : raw_reply(s, 1, 2000, &type, &nfds);
	CHECK(rc == -ENOTCONN && type == IVSOCK_AG_CHAN_REPLY && nfds == 0,
	      "OPEN before HELLO: %d", rc);
	rc = raw_send(s, IVSOCK_AG_ATTACH, 2, &r, sizeof(r), sizeof(r), fds, 1);
	rc = rc ? rc : raw_reply(s, 2, 2000, &type, &nfds);
	CHECK(rc == -ENOTCONN, "ATTACH before HELLO: %d", rc);
	rc = raw_send(s, IVSOCK_AG_ABANDON, 3, &r, sizeof(r), sizeof(r), NULL, 0);
	rc = rc ? rc : raw_reply(s, 3, 2000, &type, &nfds);
	CHECK(rc == -ENOTCONN, "ABANDON before HELLO: %d", rc);
	rc = raw_send(s, IVSOCK_AG_CLOSE, 4, &r, sizeof(r), sizeof(r), fds, 1);
	rc = rc ? rc : raw_send(s, IVSOCK_AG_LISTEN, 5, &r, 8, 8, fds, 1);
	rc = rc ? rc : raw_reply(s, 5, 2000, &type, &nfds);
	CHECK(rc == -ENOTCONN, "CLOSE (no answer) and LISTEN before HELLO: %d", rc);
	/* extra fds on a message that takes none, and on one that takes one */
	fds[1] = eventfd(0, EFD_CLOEXEC);
	fds[2] = eventfd(0, EFD_CLOEXEC);
	rc = raw_send(s, IVSOCK_AG_STATUS, 6, NULL, 0, 0, fds, 3);
	rc = rc ? rc : raw_reply(s, 6, 2000, &type, &nfds);
	CHECK(rc == 0 && type == IVSOCK_AG_STATUS_REPLY, "STATUS with three fds attached: %d", rc);
	rc = raw_send(s, IVSOCK_AG_OPEN, 7, &o, sizeof(o), sizeof(o), fds, 3);
	rc = rc ? rc : raw_reply(s, 7, 2000, &type, &nfds);
	CHECK(rc == -ENOTCONN, "OPEN with three fds before HELLO: %d", rc);
	/* unknown types */
	rc = raw_send(s, 23, 8, NULL, 0, 0, fds + 1, 1);
	rc = rc ? rc : raw_reply(s, 8, 2000, &type, &nfds);
	CHECK(rc == 1 || rc == -ENOTCONN || rc == -EOPNOTSUPP, "unknown type 23 before HELLO: %s",
	      rc == 1 ? "no answer" : strerror(-rc));
	close(s);

	/* after HELLO */
	connect_or_die(&c);
	rc = req(&c, IVSOCK_AG_CLOSE, &r, sizeof(r), fds[0], 3, false);
	rc = req(&c, IVSOCK_AG_UNLISTEN, &r, 8, fds[0], 3, false);
	rc = req(&c, IVSOCK_AG_STATUS, NULL, 0, fds[0], 3, true);
	CHECK(rc == 0, "CLOSE/UNLISTEN/STATUS with four fds each: STATUS %d", rc);
	rc = req(&c, 0x7fff, NULL, 0, fds[0], 2, true);
	CHECK(rc == -EOPNOTSUPP, "unknown odd type 0x7fff: %d", rc);
	rc = req(&c, IVSOCK_AG_HELLO, &r, 8, -1, 0, true);
	CHECK(rc == -EALREADY, "a second HELLO: %d", rc);
	/* a wrong payload size: the agent hangs up on us */
	rc = req(&c, IVSOCK_AG_OPEN, &o, 3, fds[0], 0, true);
	if (rc == 1)
		rc = req(&c, IVSOCK_AG_STATUS, NULL, 0, -1, 0, true);
	CHECK(rc == -ECONNRESET || rc == -EPIPE, "OPEN with a 3-byte payload: disconnected (%d)",
	      rc);
	ivsock_agent_close(&c);
	connect_or_die(&c);
	rc = req(&c, IVSOCK_AG_ATTACH, &r, sizeof(r) + 4, fds[0], 0, true);
	if (rc == 1)
		rc = req(&c, IVSOCK_AG_STATUS, NULL, 0, -1, 0, true);
	CHECK(rc == -ECONNRESET || rc == -EPIPE, "ATTACH with a 20-byte payload: disconnected (%d)",
	      rc);
	ivsock_agent_close(&c);
	connect_or_die(&c);
	rc = req(&c, IVSOCK_AG_ACCEPT, &r, 4, fds[0], 0, true);
	if (rc == 1)
		rc = req(&c, IVSOCK_AG_STATUS, NULL, 0, -1, 0, true);
	CHECK(rc == -ECONNRESET || rc == -EPIPE, "ACCEPT with a payload: disconnected (%d)", rc);
	ivsock_agent_close(&c);
	/* a header that lies about its length */
	connect_or_die(&c);
	rc = raw_send(c.sock, IVSOCK_AG_OPEN, ++c.seq, &o, sizeof(o), sizeof(o) + 100, fds, 1);
	rc = rc ? rc : raw_reply(c.sock, c.seq, 2000, NULL, NULL);
	if (rc == 1)
		rc = req(&c, IVSOCK_AG_STATUS, NULL, 0, -1, 0, true);
	CHECK(rc == -ECONNRESET || rc == -EPIPE, "OPEN whose header claims 128 bytes: "
	      "disconnected (%d)", rc);
	ivsock_agent_close(&c);
	close(fds[0]);
	close(fds[1]);
	close(fds[2]);
	/* and the agent still serves */
	rc = ivsock_agent_status_at(NULL, &json);
	CHECK(rc == 0 && json, "the agent answers STATUS afterwards: %d", rc);
	free(json);
	return failures;
}

/* ---- flood ---- */

/*
 * overcommit: one connection of our own, opened and accepted by us; its
 * connector end closed; then before each OPEN of the flood that end is
 * CLOSEd again (the agent must ignore a CLOSE of an end already closed).
 */
static int flood(const char *srcip, long n, long cls, bool overcommit)
{
	struct ivsock_agent_conn c;
	struct ivsock_addr dst;
	struct sockaddr_in d;
	unsigned long ok = 0, edquot = 0, other = 0;
	uint32_t li, lg;
	uint16_t p;
	int lis, rc, lasterr = 0;
	uint32_t oc_idx = 0, oc_gen = 0;
	char line[16];

	connect_or_die(&c);
	lis = tcp_listening(srcip);
	rc = ivsock_agent_listen(&c, lis, &li, &lg);
	if (rc < 0)
		die("LISTEN", rc);
	sa4(&d, srcip, port_of(lis));
	ivsock_addr_from_sockaddr(&dst, &p, (struct sockaddr *)&d, sizeof(d));
	if (overcommit) {
		struct ivsock_ag_chan r, ra;
		struct sockaddr_in a;
		int s = tcp_bound(srcip), wfd = -1, acc;

		rc = ivsock_agent_open(&c, s, &dst, p, cls < 0 ? IVSOCK_AG_CLASS_DEFAULT : (uint32_t)cls,
				       0, &r, &wfd);
		if (rc < 0)
			die("OPEN", rc);
		sa4(&a, srcip, p);
		if (connect(s, (struct sockaddr *)&a, sizeof(a)) < 0)
			die("connect", errno);
		acc = accept4(lis, NULL, NULL, SOCK_CLOEXEC);
		if (acc < 0)
			die("accept", errno);
		rc = ivsock_agent_accept(&c, acc, &ra, &wfd);
		if (rc < 0)
			die("ACCEPT", rc);
		oc_idx = r.channel;
		oc_gen = r.channel_gen;
		ivsock_agent_close_end(&c, -1, oc_idx, oc_gen, IVSOCK_SIDE_CONNECTOR, false);
		/* we keep both sockets and the acceptor's end */
	}
	for (long i = 0; i < n; i++) {
		struct ivsock_ag_chan r;
		int s = tcp_bound(srcip), wfd = -1;

		if (overcommit)
			ivsock_agent_close_end(&c, -1, oc_idx, oc_gen, IVSOCK_SIDE_CONNECTOR, false);

		rc = ivsock_agent_open(&c, s, &dst, p, cls < 0 ? IVSOCK_AG_CLASS_DEFAULT : (uint32_t)cls,
				       0, &r, &wfd);
		if (rc == 0)
			ok++;
		else if (rc == -EDQUOT)
			edquot++;
		else {
			other++;
			lasterr = rc;
		}
		if (wfd >= 0)
			close(wfd);
		close(s);
	}
	printf("%s ok=%lu edquot=%lu other=%lu last_other=%d\n", overcommit ? "overcommit" : "flood", ok, edquot, other, lasterr);
	fflush(stdout);
	/* hold everything until told */
	if (!fgets(line, sizeof(line), stdin))
		line[0] = 0;
	ivsock_agent_close(&c);
	close(lis);
	return 0;
}

/* ---- TCP entries (TRACK) ---- */

static int track_req(struct ivsock_agent_conn *c, int sock, const char *ip, uint16_t port,
		     uint16_t flags, uint32_t *idx, uint32_t *gen)
{
	struct ivsock_addr dst;
	struct sockaddr_in d;
	uint16_t p;

	sa4(&d, ip, port);
	ivsock_addr_from_sockaddr(&dst, &p, (struct sockaddr *)&d, sizeof(d));
	if (flags) {
		struct ivsock_ag_open o = { .dst = dst, .dport = p, .flags = flags };

		return req(c, IVSOCK_AG_TRACK, &o, sizeof(o), sock, 0, true);
	}
	return ivsock_agent_track(c, sock, &dst, p, idx, gen);
}

static uint16_t peer_port_of(int fd)
{
	struct sockaddr_in a;
	socklen_t l = sizeof(a);

	getpeername(fd, (struct sockaddr *)&a, &l);
	return ntohs(a.sin_port);
}

/*
 * track SRCIP N: TRACK (a connection on TCP recorded as a TCP entry) only
 * for an established socket of ours to the address it names; nobody else
 * (another client: without a socket, with its own) can free the entry; the
 * owner's CLOSE and its death free it; a uid's entries are capped (N
 * TRACKs of fresh connections end in -EDQUOT before N if N is over the cap).
 */
static int track(const char *ip, long n)
{
	struct ivsock_agent_conn c, o;
	struct chan_snap snap;
	struct table_sum s0, s1;
	uint32_t idx = 0, gen = 0, i2 = 0, g2 = 0;
	unsigned long ok = 0, edquot = 0, other = 0;
	int conn, acc, rc, lis, bound, u;

	struct rlimit rl;

	/* the cap is an eighth of the channel table: thousands of sockets */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	connect_or_die(&c);
	connect_or_die(&o);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < c.region.channel_cap / 8 + 64)
		die("RLIMIT_NOFILE below the per-uid cap of TCP entries", EMFILE);
	table_sum(&c.region, (uint8_t)c.info.vm_index, &s0);
	conn = tcp_pair(ip, &acc);
	lis = tcp_listening(ip);
	bound = tcp_bound(ip);
	u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	rc = track_req(&c, lis, ip, port_of(lis), 0, &idx, &gen);
	CHECK(rc == -EINVAL, "TRACK of a listening socket refused (%d)", rc);
	rc = track_req(&c, bound, ip, port_of(bound), 0, &idx, &gen);
	CHECK(rc == -EINVAL, "TRACK of a socket not connected refused (%d)", rc);
	rc = track_req(&c, u, ip, 9, 0, &idx, &gen);
	CHECK(rc < 0, "TRACK of a UDP socket refused (%d)", rc);
	rc = track_req(&c, -1, ip, peer_port_of(conn), 0, &idx, &gen);
	CHECK(rc < 0, "TRACK without a socket refused (%d)", rc);
	rc = track_req(&c, conn, ip, (uint16_t)(peer_port_of(conn) + 1), 0, &idx, &gen);
	CHECK(rc == -EINVAL, "TRACK naming another destination than the socket's refused (%d)", rc);
	rc = track_req(&c, conn, ip, peer_port_of(conn), 0x4, &idx, &gen);
	CHECK(rc == -EINVAL, "TRACK with unknown flags refused (%d)", rc);
	table_sum(&c.region, (uint8_t)c.info.vm_index, &s1);
	CHECK(s1.chans == s0.chans, "nothing recorded by the refused TRACKs (%u -> %u entries)",
	      s0.chans, s1.chans);

	rc = track_req(&c, conn, ip, peer_port_of(conn), 0, &idx, &gen);
	CHECK(rc == 0 && ivsock_chan_state(&c.region, idx, gen) == IVSOCK_CHAN_TCP,
	      "TRACK of our connection: a TCP entry (%d, entry %u)", rc, idx);
	rc = track_req(&c, conn, ip, peer_port_of(conn), 0, &i2, &g2);
	CHECK(rc == 0 && i2 == idx && g2 == gen, "TRACK again: the same entry (%d, %u)", rc, i2);
	rc = track_req(&c, acc, ip, peer_port_of(acc), 0, &i2, &g2);
	CHECK(rc == 0 && i2 != idx, "the accepted end is another socket: its own entry (%d)", rc);
	ivsock_agent_close_end(&c, -1, i2, g2, IVSOCK_SIDE_CONNECTOR, false);

	/* another client: CLOSE without a socket, with a socket of its own,
	 * as the acceptor side, with a stale generation */
	chan_snap(&c.region, idx, &snap);
	chan_req(&o, IVSOCK_AG_CLOSE, idx, gen, IVSOCK_SIDE_CONNECTOR, -1);
	chan_req(&o, IVSOCK_AG_CLOSE, idx, gen, IVSOCK_SIDE_CONNECTOR, acc);
	chan_req(&o, IVSOCK_AG_CLOSE, idx, gen, IVSOCK_SIDE_ACCEPTOR, -1);
	chan_req(&c, IVSOCK_AG_CLOSE, idx, gen, IVSOCK_SIDE_ACCEPTOR, -1);
	chan_req(&c, IVSOCK_AG_CLOSE, idx, gen + 1, IVSOCK_SIDE_CONNECTOR, -1);
	rc = chan_req(&o, IVSOCK_AG_ATTACH, idx, gen, IVSOCK_SIDE_CONNECTOR, conn);
	CHECK(rc < 0, "ATTACH of a TCP entry refused (%d): it has no block", rc);
	usleep(100000); /* the one-way CLOSEs were handled (the ATTACH answer came after) */
	CHECK(chan_same(&c.region, idx, &snap), "another client's CLOSEs left the entry as it was");
	/* the owner's close frees it */
	ivsock_agent_close_end(&c, -1, idx, gen, IVSOCK_SIDE_CONNECTOR, false);
	rc = track_req(&c, conn, ip, peer_port_of(conn), 0, &i2, &g2); /* a round trip */
	CHECK(ivsock_chan_state(&c.region, idx, gen) == 0, "the owner's CLOSE freed the entry");
	/* and its death frees the one just made */
	ivsock_agent_close(&c);
	usleep(200000);
	CHECK(rc == 0 && ivsock_chan_state(&o.region, i2, g2) == 0,
	      "the owner's exit freed its entry (%d)", rc);

	/* the per-uid cap: fresh connections, each tracked, until refused */
	for (long i = 0; i < n; i++) {
		int a2, c2 = tcp_pair(ip, &a2);

		rc = track_req(&o, c2, ip, peer_port_of(c2), 0, &i2, &g2);
		if (rc == 0)
			ok++;
		else if (rc == -EDQUOT || rc == -ENOSPC)
			edquot++;
		else
			other++;
		close(a2); /* the entry outlives its peer socket: the test holds c2 */
		if (rc < 0) {
			close(c2);
			if (edquot)
				break;
		}
	}
	printf("track ok=%lu capped=%lu other=%lu cap_per_uid=%u\n", ok, edquot, other,
	       o.region.channel_cap / 8);
	CHECK(other == 0, "no TRACK of a fresh connection failed otherwise");
	ivsock_agent_close(&o);
	close(conn);
	close(acc);
	close(lis);
	close(bound);
	close(u);
	return failures;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 4 && !strcmp(argv[1], "victim"))
		return victim(argv[2], (uint16_t)atoi(argv[3]));
	if (argc == 4 && !strcmp(argv[1], "offer"))
		return offer(argv[2], (uint16_t)atoi(argv[3]));
	if (argc == 2 && !strcmp(argv[1], "protocol"))
		return protocol();
	if (argc == 5 && !strcmp(argv[1], "flood"))
		return flood(argv[2], atol(argv[3]), atol(argv[4]), false);
	if (argc == 4 && !strcmp(argv[1], "track"))
		return track(argv[2], atol(argv[3]));
	if (argc == 5 && !strcmp(argv[1], "overcommit"))
		return flood(argv[2], atol(argv[3]), atol(argv[4]), true);
	fprintf(stderr, "usage: broker-hostile victim SRCIP DPORT\n"
			"       broker-hostile offer SRCIP DPORT\n"
			"       broker-hostile protocol\n"
			"       broker-hostile flood SRCIP N CLASS\n"
			"       broker-hostile overcommit SRCIP N CLASS\n"
			"       broker-hostile track SRCIP N\n");
	return 100;
}
