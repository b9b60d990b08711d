// SPDX-License-Identifier: MIT
/*
 * Fuzzes the agent's broker (guestdrv/agent/broker.c through
 * agent_client_event in clients.c): LISTEN, UNLISTEN, OPEN, ACCEPT, ABANDON,
 * CLOSE, ATTACH (and HELLO/PEER_FD/STATUS around them) from three clients
 * (two of one uid, one of another) of a real agent struct over a real
 * formatted region in memory: this VM (index 0) and a second VM (index 1,
 * 10.99.0.2, with a listener on port 80 that nobody serves). Each client is
 * a SOCK_SEQPACKET socketpair; the backend is minimal (eventfds for HELLO,
 * window() cuts no fd (server), an eventfd (pci-like) or fails, revoke() is
 * a no-op).
 *
 * The input is a script: make sockets of every kind (TCP listening on
 * loopback, bound not connected, connected over loopback, accepted, unbound;
 * UDP; UNIX; a pipe; an eventfd), connect one to a listener and accept, let
 * VM 1 take and accept the offers posted to it and close its ends, make a
 * client stop reading (replies cannot be sent: OPEN/ACCEPT are undone), and
 * send requests whose type, payload (structured from what earlier replies
 * handed out, mutated: stale generation, other side, other channel; or raw
 * bytes of any length) and attached fds (none, one of the sockets, extra
 * eventfds) the input chooses. After every request:
 *   - every reply is well formed, of the request's reply type, echoes its
 *     seq, carries a window fd only on success (pci-like mode: always);
 *   - every channel slot is FREE or a settled state (never INIT/ACCEPTING
 *     between requests) and names a claimed block of its class;
 *   - CLOSE/ABANDON/ATTACH change no channel but the one named, and that one
 *     only if the requester owns the end (its client, or a socket with the
 *     end's cookie) and the generation is current (wrong owner, stale
 *     generation: nothing moves);
 *   - ACCEPT changes only the channel whose 4-tuple is the accepted
 *     socket's: nothing with a socket that is not an accepted one;
 *   - the agent's per-client counters match the table, and no non-root uid
 *     holds more live ends than --max-channels-per-uid ([end-count],
 *     [uid-limit]; crash-close-twice is the fixed reproducer).
 * At the end every client hangs up: no channel, offer, listener or block
 * may stay claimed, every client id is free, and no descriptor leaked.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "ivsock/channel.h"
#include "ivsock/directory.h"
#include "ivsock/listener.h"
#include "ivsock/offer.h"
#include "../../guestdrv/agent/agent.h"
#include "../../guestdrv/agent/log.h"
#include "fuzz.h"

/* ids of invariants that today's code is known to break (reported):
 * IVSOCK_FUZZ_XFAIL= makes them fatal; run-fuzz.sh replays
 * corpus/broker/crash-* with every check fatal. */
#define FUZZ_XFAIL_DEFAULT ""
#include "scribble.h"

#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif

#define REGION_SIZE (512U * 1024U)
#define NCLIENTS    3
#define NSOCKS      8
#define NREFS       16
#define MAX_OPS     48
#define MAX_CHANS   3  /* --max-channels-per-uid in this harness */

enum sk_kind { SK_NONE, SK_LISTEN, SK_BOUND, SK_CONN, SK_ACCEPTED, SK_UNBOUND,
	       SK_UDP, SK_UNIX, SK_PIPE, SK_EVENTFD };

struct sk {
	int fd, fd2;          /* fd2: the other end of a pipe / UNIX pair */
	int kind;
	uint64_t cookie;      /* SO_COOKIE of TCP sockets, 0 otherwise */
	uint16_t port;        /* local port */
	bool v6;
};

struct cl {
	struct agent_client *c; /* NULL once the agent dropped it */
	int peer;               /* our end of the socketpair */
	uint32_t seq;
};

struct ref {
	uint32_t a, b, side;    /* channel, gen, side / listener, gen */
	bool listener;
};

static uint8_t *region;
static int epfd = -1;
static int win_mode;    /* 0: server (no fd), 1: eventfd windows, 2: window fails */

static struct cl cls[NCLIENTS];
static struct sk sks[NSOCKS];
static struct ref refs[NREFS];
static unsigned nrefs;
static bool trace; /* FUZZ_BROKER_TRACE=1: print each request and its status */

/* ---- the minimal backend ---- */

static int fb_client_fds(struct agent_backend *b, uint32_t vector, uint64_t tables_size,
			 int fds[2], int *keep)
{
	(void)b;
	(void)vector;
	(void)tables_size;
	fds[0] = eventfd(0, EFD_CLOEXEC);
	fds[1] = eventfd(0, EFD_CLOEXEC);
	*keep = -1;
	FUZZ_ASSERT(fds[0] >= 0 && fds[1] >= 0);
	return 0;
}

static int fb_window(struct agent_backend *b, uint64_t off, uint64_t len, uint64_t wr_off,
		     uint64_t wr_len, uint32_t ring_peer, int *fd)
{
	(void)b;
	(void)ring_peer;
	FUZZ_ASSERT(off % 4096 == 0 && len && off + len <= REGION_SIZE);
	FUZZ_ASSERT(wr_off + wr_len <= len && wr_len == len / 2);
	*fd = -1;
	if (win_mode == 2)
		return -ENOMEM;
	if (win_mode == 1) {
		*fd = eventfd(0, EFD_CLOEXEC);
		FUZZ_ASSERT(*fd >= 0);
	}
	return 0;
}

static void fb_revoke(struct agent_backend *b, uint64_t off, uint64_t len)
{
	(void)b;
	FUZZ_ASSERT(off % 4096 == 0 && len && off + len <= REGION_SIZE);
}

static int fb_peer_fd(struct agent_backend *b, uint32_t peer, uint32_t vector)
{
	(void)b;
	(void)vector;
	if (peer == 7)
		return -ENOENT;
	return eventfd(0, EFD_CLOEXEC);
}

static const struct agent_backend_ops fb_ops = {
	.name = "fuzz",
	.kind = IVSOCK_BACKEND_SERVER,
	.client_fds = fb_client_fds,
	.window = fb_window,
	.revoke = fb_revoke,
	.peer_fd = fb_peer_fd,
};

static unsigned long rings;

static int fdb_notify(struct ivsock_doorbell *db, uint32_t peer, uint32_t vector)
{
	(void)db;
	(void)peer;
	(void)vector;
	rings++;
	return 0;
}

static void fdb_free(struct ivsock_doorbell *db)
{
	(void)db;
}

static const struct ivsock_doorbell_ops fdb_ops = { .notify = fdb_notify, .free = fdb_free };
static struct ivsock_doorbell fdb = { .ops = &fdb_ops, .wait_fd = -1 };

/* ---- sockets ---- */

static void sk_close(struct sk *s)
{
	if (s->kind == SK_NONE)
		return;
	if (s->kind >= SK_LISTEN && s->kind <= SK_UNBOUND) {
		/* no TIME_WAIT: the fuzzer makes many connections */
		struct linger l = { 1, 0 };

		setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	}
	close(s->fd);
	if (s->fd2 >= 0)
		close(s->fd2);
	memset(s, 0, sizeof(*s));
	s->fd = s->fd2 = -1;
}

static void sk_learn(struct sk *s)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss), cl = sizeof(s->cookie);

	s->cookie = 0;
	getsockopt(s->fd, SOL_SOCKET, SO_COOKIE, &s->cookie, &cl);
	if (getsockname(s->fd, (struct sockaddr *)&ss, &sl) == 0)
		s->port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
						   : ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static int tcp_bound(bool v6, bool bind_it)
{
	int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a4 = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };

	if (fd < 0 || !bind_it)
		return fd;
	if (bind(fd, v6 ? (struct sockaddr *)&a6 : (struct sockaddr *)&a4,
		 v6 ? sizeof(a6) : sizeof(a4)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void sk_make(struct sk *s, int kind, bool v6)
{
	int p[2];

	sk_close(s);
	s->fd = s->fd2 = -1;
	switch (kind) {
	case SK_LISTEN:
		s->fd = tcp_bound(v6, true);
		if (s->fd >= 0 && listen(s->fd, 4) < 0) {
			close(s->fd);
			s->fd = -1;
		}
		break;
	case SK_BOUND:
		s->fd = tcp_bound(v6, true);
		break;
	case SK_UNBOUND:
		s->fd = tcp_bound(v6, false);
		break;
	case SK_UDP: {
		struct sockaddr_in a4 = { .sin_family = AF_INET,
					  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

		s->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (s->fd >= 0)
			bind(s->fd, (struct sockaddr *)&a4, sizeof(a4));
		break;
	}
	case SK_UNIX:
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) == 0) {
			s->fd = p[0];
			s->fd2 = p[1];
		}
		break;
	case SK_PIPE:
		if (pipe2(p, O_CLOEXEC) == 0) {
			s->fd = p[0];
			s->fd2 = p[1];
		}
		break;
	case SK_EVENTFD:
		s->fd = eventfd(0, EFD_CLOEXEC);
		break;
	default:
		return;
	}
	if (s->fd < 0) {
		s->fd = s->fd2 = -1;
		return;
	}
	s->kind = kind;
	s->v6 = v6;
	sk_learn(s);
}

/* Connect bound socket s to listening socket l over loopback and accept into
 * slot into. */
static void sk_connect(struct sk *s, struct sk *l, struct sk *into)
{
	struct sockaddr_in a4 = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	struct pollfd pf;
	int fd, fl;

	if (s->kind != SK_BOUND || l->kind != SK_LISTEN || s->v6 != l->v6 || s == into || l == into)
		return;
	a4.sin_port = a6.sin6_port = htons(l->port);
	fl = fcntl(s->fd, F_GETFL);
	fcntl(s->fd, F_SETFL, fl | O_NONBLOCK);
	if (connect(s->fd, s->v6 ? (struct sockaddr *)&a6 : (struct sockaddr *)&a4,
		    s->v6 ? sizeof(a6) : sizeof(a4)) < 0 && errno != EINPROGRESS)
		return;
	pf.fd = s->fd;
	pf.events = POLLOUT;
	if (poll(&pf, 1, 200) != 1)
		return;
	fcntl(s->fd, F_SETFL, fl);
	s->kind = SK_CONN;
	pf.fd = l->fd;
	pf.events = POLLIN;
	if (poll(&pf, 1, 200) != 1)
		return;
	fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return;
	sk_close(into);
	into->fd = fd;
	into->fd2 = -1;
	into->kind = SK_ACCEPTED;
	into->v6 = l->v6;
	sk_learn(into);
}

/* ---- requests and replies ---- */

static bool send_req(int s, const void *p, size_t len, const int *fds, int nfds)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(4 * sizeof(int))];
	} ctl;
	struct iovec iov = { (void *)p, len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };

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
	return sendmsg(s, &msg, MSG_NOSIGNAL | MSG_DONTWAIT) == (ssize_t)len;
}

static void add_ref(uint32_t a, uint32_t b, uint32_t side, bool listener)
{
	struct ref *r = &refs[nrefs++ % NREFS];

	r->a = a;
	r->b = b;
	r->side = side;
	r->listener = listener;
}

static uint16_t expected_reply(uint16_t type)
{
	switch (type) {
	case IVSOCK_AG_HELLO: return IVSOCK_AG_HELLO_REPLY;
	case IVSOCK_AG_PEER_FD: return IVSOCK_AG_PEER_FD_REPLY;
	case IVSOCK_AG_STATUS: return IVSOCK_AG_STATUS_REPLY;
	case IVSOCK_AG_LISTEN: return IVSOCK_AG_LISTEN_REPLY;
	case IVSOCK_AG_OPEN:
	case IVSOCK_AG_TRACK:
	case IVSOCK_AG_ACCEPT:
	case IVSOCK_AG_ATTACH: return IVSOCK_AG_CHAN_REPLY;
	case IVSOCK_AG_ABANDON: return IVSOCK_AG_ABANDON_REPLY;
	default: return 0;
	}
}

/* Read every reply client k has: well formed, for request (type, seq).
 * Successful CHAN/LISTEN replies become refs for later requests.
 * @return the status of the last reply, or 1 if none came. */
static int32_t drain(unsigned k, uint16_t type, uint32_t seq)
{
	static uint8_t buf[IVSOCK_MSG_MAX];
	int32_t last = 1;

	for (;;) {
		union {
			struct cmsghdr h;
			char b[CMSG_SPACE(4 * sizeof(int))];
		} ctl;
		struct iovec iov = { buf, sizeof(buf) };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
				      .msg_control = ctl.b, .msg_controllen = sizeof(ctl.b) };
		struct ivsock_msg_hdr h;
		struct cmsghdr *cm;
		ssize_t n = recvmsg(cls[k].peer, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		int nfds = 0;

		if (n <= 0)
			break;
		for (cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
			size_t m = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int), i;

			for (i = 0; i < m; i++) {
				int f;

				memcpy(&f, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
				close(f);
				nfds++;
			}
		}
		FUZZ_ASSERT(!(msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)));
		FUZZ_ASSERT(ivsock_msg_check(buf, (size_t)n, 0, 0) == 0);
		memcpy(&h, buf, sizeof(h));
		last = h.status;
		if (h.type == IVSOCK_AG_REFUSED)
			continue;
		FUZZ_ASSERT(h.seq == seq);
		if (expected_reply(type))
			FUZZ_ASSERT(h.type == expected_reply(type));
		else
			/* unknown odd types: the next even one; even: the same */
			FUZZ_ASSERT(h.type == ((type & 1) ? type + 1 : type));
		if (h.status)
			FUZZ_ASSERT(nfds == 0 && h.len == 0);
		if (h.type == IVSOCK_AG_CHAN_REPLY && h.status == 0) {
			struct ivsock_ag_chan r;

			FUZZ_ASSERT(h.len == sizeof(r));
			/* a TCP entry has no window */
			FUZZ_ASSERT(nfds == (type != IVSOCK_AG_TRACK && win_mode == 1));
			memcpy(&r, buf + sizeof(h), sizeof(r));
			add_ref(r.channel, r.channel_gen, r.side, false);
		}
		if (h.type == IVSOCK_AG_LISTEN_REPLY && h.status == 0) {
			struct ivsock_ag_listen_reply r;

			FUZZ_ASSERT(h.len == sizeof(r));
			memcpy(&r, buf + sizeof(h), sizeof(r));
			add_ref(r.listener, r.listener_gen, 0, true);
		}
	}
	return last;
}

/* ---- invariants ---- */

struct snap {
	uint64_t slot[64];
	uint32_t flags[64][2];
};

static void snap_take(const struct ivsock_region *rg, struct snap *s)
{
	for (uint32_t i = 0; i < rg->channel_cap; i++) {
		s->slot[i] = atomic_load_explicit(&rg->channels[i].slot, memory_order_relaxed);
		s->flags[i][0] = atomic_load_explicit(&rg->channels[i].end[0].flags, memory_order_relaxed);
		s->flags[i][1] = atomic_load_explicit(&rg->channels[i].end[1].flags, memory_order_relaxed);
	}
}

static bool snap_same(const struct ivsock_region *rg, const struct snap *s, uint32_t i)
{
	return s->slot[i] == atomic_load_explicit(&rg->channels[i].slot, memory_order_relaxed) &&
	       s->flags[i][0] == atomic_load_explicit(&rg->channels[i].end[0].flags, memory_order_relaxed) &&
	       s->flags[i][1] == atomic_load_explicit(&rg->channels[i].end[1].flags, memory_order_relaxed);
}

/* A live, not closed end of ours? */
static bool end_live(const struct ivsock_region *rg, uint32_t i, int side)
{
	const struct ivsock_channel *ch = &rg->channels[i];
	struct ivsock_slot_val v = ivsock_slot_get((ivsock_a64 *)&ch->slot);
	uint32_t fl = atomic_load_explicit(&ch->end[side].flags, memory_order_relaxed);

	if (v.state == IVSOCK_SLOT_FREE || ch->end[side].vm_index != 0 ||
	    (fl & IVSOCK_END_CLOSED))
		return false;
	/* the acceptor's end exists once it attached */
	return side == 0 || (fl & IVSOCK_END_ATTACHED);
}

static void check_tables(struct agent *a)
{
	const struct ivsock_region *rg = &a->be.rg;
	uint32_t uid_ends[2] = { 0, 0 };

	for (uint32_t i = 0; i < rg->channel_cap; i++) {
		struct ivsock_slot_val v = ivsock_slot_get(&rg->channels[i].slot);
		uint32_t blk;

		if (v.state == IVSOCK_SLOT_FREE)
			continue;
		if (v.state == IVSOCK_CHAN_TCP) {
			/* a connection on TCP: ours, no block */
			FUZZ_ASSERT(v.vm == 0 && rg->channels[i].block_gen == 0 &&
				    rg->channels[i].end[0].vm_index == 0);
			continue;
		}
		/* the agent is single-threaded: nothing stays half done */
		FUZZ_ASSERT(v.state == IVSOCK_CHAN_OFFERED || v.state == IVSOCK_CHAN_CONNECTED ||
			    v.state == IVSOCK_CHAN_ABANDONED);
		blk = rg->channels[i].block;
		FUZZ_ASSERT(ivsock_region_block_class(rg, blk) >= 0);
		FUZZ_ASSERT(ivsock_region_block_vm(rg, blk) == 0);
		FUZZ_ASSERT(ivsock_slot_get(&rg->blockslots[blk]).state != IVSOCK_SLOT_FREE);
		for (int side = 0; side < 2; side++)
			if (end_live(rg, i, side) && rg->channels[i].end[side].uid >= 1000 &&
			    rg->channels[i].end[side].uid <= 1001)
				uid_ends[rg->channels[i].end[side].uid - 1000]++;
	}
	FUZZ_CHECK("uid-limit", uid_ends[0] <= MAX_CHANS && uid_ends[1] <= MAX_CHANS);
	for (struct agent_client *c = a->clients; c; c = c->next) {
		uint32_t ends = 0, lis = 0, tracked = 0;

		if (!c->hello)
			continue;
		for (uint32_t i = 0; i < rg->channel_cap; i++) {
			if (ivsock_slot_get(&rg->channels[i].slot).state == IVSOCK_CHAN_TCP) {
				tracked += rg->channels[i].end[0].client == c->id;
				continue;
			}
			for (int side = 0; side < 2; side++)
				ends += end_live(rg, i, side) &&
					rg->channels[i].end[side].client == c->id;
		}
		FUZZ_CHECK("tracked-count", c->tracked == tracked);
		for (uint32_t i = 0; i < rg->listener_cap; i++) {
			struct ivsock_slot_val v = ivsock_slot_get(&rg->listeners[i].slot);

			lis += v.state != IVSOCK_SLOT_FREE && v.vm == 0 && v.client == c->id;
		}
		FUZZ_CHECK("end-count", c->ends == ends);
		FUZZ_ASSERT(c->listeners == lis);
	}
}

static bool alive(struct agent *a, struct agent_client *c)
{
	for (struct agent_client *p = a->clients; p; p = p->next)
		if (p == c)
			return true;
	return false;
}

static void addr4(struct ivsock_addr *ad, uint32_t host)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(host) };
	uint16_t port;

	FUZZ_ASSERT(ivsock_addr_from_sockaddr(ad, &port, (struct sockaddr *)&a, sizeof(a)) == 0);
}

static void addr6_loop(struct ivsock_addr *ad)
{
	struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	uint16_t port;

	FUZZ_ASSERT(ivsock_addr_from_sockaddr(ad, &port, (struct sockaddr *)&a, sizeof(a)) == 0);
}

/* One request of client k, from the script. */
static void request(struct agent *a, struct fuzz_in *in)
{
	uint8_t kt = fuzz_u8(in), sel = fuzz_u8(in), fdsel = fuzz_u8(in);
	unsigned k = kt % NCLIENTS;
	static const uint16_t types[] = {
		IVSOCK_AG_HELLO, IVSOCK_AG_LISTEN, IVSOCK_AG_UNLISTEN, IVSOCK_AG_OPEN,
		IVSOCK_AG_ACCEPT, IVSOCK_AG_ABANDON, IVSOCK_AG_CLOSE, IVSOCK_AG_ATTACH,
		IVSOCK_AG_OPEN, IVSOCK_AG_PORT, IVSOCK_AG_PEER_FD, IVSOCK_AG_STATUS,
		IVSOCK_AG_TRACK,
	};
	uint16_t type = kt / 3 < 78 ? types[kt / 3 % 13] : fuzz_u16(in);
	struct {
		struct ivsock_msg_hdr h;
		uint8_t p[64];
	} m;
	uint32_t len = 0;
	struct ivsock_ag_chan_ref cref = { 0 };
	bool have_cref = false;
	struct ivsock_region *rg = &a->be.rg;
	struct agent_client *c = cls[k].c;
	struct sk *s = &sks[fdsel % NSOCKS];
	int fds[4], nfds = 0, sock = -1, ctl;
	struct snap before;
	uint32_t seq;
	int32_t st;

	if (!c)
		return;
	memset(&m, 0, sizeof(m));
	switch (type) {
	case IVSOCK_AG_HELLO:
		len = sizeof(struct ivsock_ag_hello);
		break;
	case IVSOCK_AG_PEER_FD: {
		struct ivsock_ag_peer p = { sel & 7, sel >> 3 };

		memcpy(m.p, &p, sizeof(p));
		len = sizeof(p);
		break;
	}
	case IVSOCK_AG_LISTEN: {
		struct ivsock_ag_listen l = { 0 };

		if (sel & 0x80)
			l.flags = fuzz_u8(in);
		memcpy(m.p, &l, sizeof(l));
		len = sizeof(l);
		break;
	}
	case IVSOCK_AG_UNLISTEN:
	case IVSOCK_AG_ABANDON:
	case IVSOCK_AG_CLOSE:
	case IVSOCK_AG_PORT:
	case IVSOCK_AG_ATTACH: {
		struct ref r = { 0 };

		if (nrefs)
			r = refs[(sel & 15) % (nrefs < NREFS ? nrefs : NREFS)];
		switch ((sel >> 4) & 7) {
		case 1: r.b++; break;                 /* stale generation */
		case 2: r.b--; break;
		case 3: r.side ^= 1; break;           /* the other end */
		case 4: r.a = (r.a + 1) % rg->channel_cap; break;
		case 5: r.a = fuzz_u32(in); r.b = fuzz_u32(in); r.side = fuzz_u8(in); break;
		case 6: r.side = fuzz_u32(in); break;
		default: break;
		}
		if (type == IVSOCK_AG_UNLISTEN) {
			struct ivsock_ag_listener_ref l = { r.a, r.b };

			memcpy(m.p, &l, sizeof(l));
			len = sizeof(l);
		} else {
			cref.channel = r.a;
			cref.channel_gen = r.b;
			cref.side = r.side;
			cref.flags = (sel & 0x80) ? IVSOCK_AG_CLOSE_RESET : 0;
			memcpy(m.p, &cref, sizeof(cref));
			len = sizeof(cref);
			have_cref = true;
		}
		break;
	}
	case IVSOCK_AG_OPEN:
	case IVSOCK_AG_TRACK: {
		struct ivsock_ag_open o = { .size_class = type == IVSOCK_AG_TRACK ? 0 :
							  IVSOCK_AG_CLASS_DEFAULT };
		struct sk *l = &sks[(sel >> 3) % NSOCKS];

		switch (sel & 7) {
		case 0: case 1: addr4(&o.dst, INADDR_LOOPBACK); o.dport = l->port; break;
		case 2: addr4(&o.dst, 0x0a630002); o.dport = 80; break;   /* VM 1 */
		case 3: addr4(&o.dst, 0xc0000201); o.dport = 80; break;   /* not a VM */
		case 4: addr6_loop(&o.dst); o.dport = l->port; break;
		case 5: addr4(&o.dst, INADDR_LOOPBACK); o.dport = 0; break;
		case 6: addr4(&o.dst, 0x0a630002); o.dport = 81; break;   /* no listener */
		default: {
			size_t got;
			const uint8_t *p = fuzz_bytes(in, sizeof(o), &got);

			memcpy(&o, p, got);
			break;
		}
		}
		if (fdsel & 0x40)
			o.size_class = fuzz_u8(in) % 4;
		if ((sel & 0x80) && type == IVSOCK_AG_OPEN) {
			/* what the shim sends: a marker now, PORT later */
			o.flags = IVSOCK_AG_OPEN_MARK;
		}
		if ((sel & 0x80) && type == IVSOCK_AG_TRACK)
			o.flags = fuzz_u16(in); /* TRACK knows no flags */
		memcpy(m.p, &o, sizeof(o));
		len = sizeof(o);
		break;
	}
	case IVSOCK_AG_ACCEPT:
	case IVSOCK_AG_STATUS:
		break;
	default: {
		size_t got;
		const uint8_t *p = fuzz_bytes(in, sel % sizeof(m.p), &got);

		memcpy(m.p, p, got);
		len = (uint32_t)got;
		break;
	}
	}
	/* wrong payload sizes */
	if ((fdsel & 0x30) == 0x30)
		len = (len + (sel & 7) + 1) % sizeof(m.p);
	/* fds: none, the socket, the socket + extras, extras only */
	switch ((fdsel >> 3) & 3) {
	case 1:
	case 2:
		if (s->kind != SK_NONE)
			fds[nfds++] = sock = s->fd;
		if (((fdsel >> 3) & 3) == 2)
			while (nfds < 3)
				fds[nfds++] = eventfd(0, EFD_CLOEXEC);
		break;
	case 3:
		if (fdsel & 0x80)
			fds[nfds++] = eventfd(0, EFD_CLOEXEC);
		break;
	}
	seq = ++cls[k].seq;
	ivsock_msg_init(&m.h, type, len, seq);
	if (fdsel & 0x80 && (fdsel & 0x07) == 7)
		m.h.magic ^= 1; /* a malformed header: the client is dropped */
	snap_take(rg, &before);
	ctl = send_req(cls[k].peer, &m, sizeof(m.h) + len, fds, nfds);
	for (int i = 0; i < nfds; i++)
		if (fds[i] != sock)
			close(fds[i]);
	if (!ctl)
		return;
	agent_client_event(a, c, EPOLLIN);
	if (!alive(a, c)) {
		/* malformed: dropped, everything it held released */
		cls[k].c = NULL;
		while (drain(k, type, seq) != 1)
			;
		return;
	}
	st = drain(k, type, seq);
	if (trace)
		fprintf(stderr, "broker: client %u type %u len %u fds %d sock kind %d -> %d\n",
			k, type, len, nfds, sock >= 0 ? s->kind : -1, st);

	/* Who may have changed which channel. */
	if (have_cref && (type == IVSOCK_AG_CLOSE || type == IVSOCK_AG_ABANDON ||
			  type == IVSOCK_AG_PORT ||
			  type == IVSOCK_AG_ATTACH) && len == sizeof(cref)) {
		for (uint32_t i = 0; i < rg->channel_cap; i++) {
			struct ivsock_slot_val v = ivsock_slot_unpack(before.slot[i]);
			const struct ivsock_channel *ch = &rg->channels[i];
			bool owner;

			if (i != cref.channel || cref.side > 1 || v.gen != cref.channel_gen ||
			    v.state == IVSOCK_SLOT_FREE) {
				FUZZ_ASSERT(snap_same(rg, &before, i));
				continue;
			}
			owner = ch->end[cref.side].vm_index == 0 &&
				(ch->end[cref.side].client == c->id ||
				 (sock >= 0 && s->cookie && s->cookie == ch->end[cref.side].cookie));
			if (!owner)
				FUZZ_ASSERT(snap_same(rg, &before, i));
		}
	}
	if (type == IVSOCK_AG_TRACK) {
		for (uint32_t i = 0; i < rg->channel_cap; i++) {
			struct ivsock_slot_val v = ivsock_slot_unpack(before.slot[i]);

			if (snap_same(rg, &before, i))
				continue;
			if (v.state == IVSOCK_SLOT_FREE &&
			    ivsock_slot_get(&rg->channels[i].slot).state == IVSOCK_SLOT_FREE)
				continue; /* claimed and given back: the reply could not go */
			/* only a free slot becomes a TCP entry of this client,
			 * for a connected socket of its own */
			FUZZ_ASSERT(v.state == IVSOCK_SLOT_FREE && st == 0 && sock >= 0 &&
				    (s->kind == SK_CONN || s->kind == SK_ACCEPTED));
			FUZZ_ASSERT(ivsock_slot_get(&rg->channels[i].slot).state == IVSOCK_CHAN_TCP &&
				    rg->channels[i].end[0].client == c->id);
		}
	}
	if (type == IVSOCK_AG_ACCEPT && len == 0) {
		for (uint32_t i = 0; i < rg->channel_cap; i++) {
			if (snap_same(rg, &before, i))
				continue;
			/* only an accepted socket's own connection */
			FUZZ_ASSERT(sock >= 0 && s->kind == SK_ACCEPTED);
		}
	}
	if (type == IVSOCK_AG_ATTACH || type == IVSOCK_AG_UNLISTEN || type == IVSOCK_AG_LISTEN) {
		/* never changes a channel */
		if (type != IVSOCK_AG_ATTACH || len != sizeof(cref))
			for (uint32_t i = 0; i < rg->channel_cap; i++)
				FUZZ_ASSERT(snap_same(rg, &before, i));
	}
	check_tables(a);
}

/* ---- VM 1: an honest acceptor of the connections we open to it ---- */

#define NVM1 8
static struct ivsock_chan_view vm1[NVM1];
static bool vm1_open[NVM1];

static void vm1_accept_all(struct ivsock_region *rg)
{
	const struct ivsock_end_id me = { .vm = 1, .client = 1, .peer_id = 11, .vector = 0,
					  .uid = 2000 };

	for (uint32_t i = 0; i < rg->offer_cap; i++) {
		struct ivsock_tuple t = rg->offers[i].tuple;
		uint32_t chan, cgen;
		uint8_t owner;
		unsigned k;

		if (ivsock_slot_get(&rg->offers[i].slot).state == IVSOCK_SLOT_FREE)
			continue;
		for (k = 0; k < NVM1 && vm1_open[k]; k++)
			;
		if (k == NVM1)
			return;
		if (ivsock_offer_take_as(rg, &t, 1, &chan, &cgen, &owner) < 0)
			continue;
		if (ivsock_chan_accept(rg, chan, cgen, owner, &me, &vm1[k]) == 0)
			vm1_open[k] = true;
	}
}

static void vm1_close(struct ivsock_region *rg, unsigned k)
{
	k %= NVM1;
	if (!vm1_open[k])
		return;
	ivsock_chan_close_view(rg, &vm1[k], false);
	vm1_open[k] = false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	uint8_t mode = fuzz_u8(&in);
	struct ivsock_region_params pr;
	static struct agent a;
	struct ivsock_region *rg;
	struct ivsock_addr vm1addr;
	uint32_t l1gen;
	int fds_before, l1, ops = 0;

	if (!region) {
		region = aligned_alloc(4096, REGION_SIZE);
		FUZZ_ASSERT(region);
		epfd = epoll_create1(EPOLL_CLOEXEC);
		FUZZ_ASSERT(epfd >= 0);
		agent_log_init(false, 0);
		trace = getenv("FUZZ_BROKER_TRACE") != NULL;
	}
	fds_before = fuzz_open_fds();
	win_mode = mode & 3;
	if (win_mode == 3)
		win_mode = 0;
	memset(&a, 0, sizeof(a));
	a.epfd = epfd;
	a.lfd = -1;
	a.reserve_fd = -1;
	a.be.ops = &fb_ops;
	a.be.ctl_fd = -1;
	a.be.base = region;
	a.be.size = REGION_SIZE;
	a.be.db = &fdb;
	ivsock_region_params_single(&pr, 4096);
	pr.vm_cap = 2;
	pr.listener_cap = 4;
	pr.offer_cap = 8;
	pr.channel_cap = 8;
	rg = &a.be.rg;
	FUZZ_ASSERT(ivsock_region_format(rg, region, REGION_SIZE, &pr) == 0);
	FUZZ_ASSERT(rg->channel_cap <= 64);
	FUZZ_ASSERT(ivsock_dir_add(rg, 10, 4, "vm0", NULL) == 0);
	FUZZ_ASSERT(ivsock_dir_add(rg, 11, 4, "vm1", NULL) == 1);
	addr4(&vm1addr, 0x0a630002);
	FUZZ_ASSERT(ivsock_dir_set_addrs(rg, 1, &vm1addr, 1) == 0);
	l1 = ivsock_listener_add(rg, 1, 1, &vm1addr, 80, 0, &l1gen);
	FUZZ_ASSERT(l1 >= 0);
	a.be.peer_id = 10;
	a.be.vectors = 4;
	a.be.vm_index = 0;
	a.limits.max_chans = MAX_CHANS;
	a.limits.max_listeners = 2;
	a.limits.ring_share = (mode & 4) ? 100 : (mode & 32) ? 10 : 50;
	agent_ids_init(&a.ids, 4);

	for (unsigned k = 0; k < NCLIENTS; k++) {
		struct agent_client *c = calloc(1, sizeof(*c));
		int sv[2];

		FUZZ_ASSERT(c);
		FUZZ_ASSERT(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
		c->ev.kind = EV_CLIENT;
		c->fd = sv[0];
		c->pid = 100 + (pid_t)k;
		c->uid = k == 2 ? ((mode & 16) ? 0 : 1001) : 1000;
		c->allowed = true;
		c->be_fd = -1;
		c->next = a.clients;
		a.clients = c;
		a.nclients++;
		cls[k].c = c;
		cls[k].peer = sv[1];
		cls[k].seq = 0;
	}
	for (unsigned i = 0; i < NSOCKS; i++) {
		memset(&sks[i], 0, sizeof(sks[i]));
		sks[i].fd = sks[i].fd2 = -1;
	}
	nrefs = 0;
	memset(vm1_open, 0, sizeof(vm1_open));
	/* everybody says HELLO first unless the input wants requests before it */
	if (!(mode & 8))
		for (unsigned k = 0; k < NCLIENTS; k++) {
			struct {
				struct ivsock_msg_hdr h;
				struct ivsock_ag_hello p;
			} m = { .p = { 1, 0 } };

			ivsock_msg_init(&m.h, IVSOCK_AG_HELLO, sizeof(m.p), ++cls[k].seq);
			FUZZ_ASSERT(send_req(cls[k].peer, &m, sizeof(m), NULL, 0));
			agent_client_event(&a, cls[k].c, EPOLLIN);
			FUZZ_ASSERT(drain(k, IVSOCK_AG_HELLO, cls[k].seq) == 0);
			FUZZ_ASSERT(cls[k].c->hello);
		}
	/* Script: [op: % 16 < 6 a socket/VM 1/client op + arg, else a request] ... */
	while (in.n && ops++ < MAX_OPS) {
		uint8_t op = fuzz_u8(&in), arg;
		struct sk *s;

		if (op % 16 >= 6) { /* a request */
			request(&a, &in);
			continue;
		}
		arg = fuzz_u8(&in);
		s = &sks[arg % NSOCKS];

		switch (op % 16) {
		case 0: /* make a socket */
			sk_make(s, SK_LISTEN + ((arg >> 3) & 15) % (SK_EVENTFD - SK_LISTEN + 1),
				(arg & 0x80) != 0);
			if (s->kind == SK_CONN || s->kind == SK_ACCEPTED)
				sk_close(s);
			break;
		case 1: /* connect a bound socket to a listener, accept */
			sk_connect(s, &sks[(arg >> 3) % NSOCKS], &sks[(op >> 4) % NSOCKS]);
			break;
		case 2: /* close one */
			sk_close(s);
			break;
		case 3: /* VM 1's side takes the offers posted to it */
			vm1_accept_all(rg);
			break;
		case 4: /* VM 1 closes one of its ends */
			vm1_close(rg, arg);
			break;
		default: /* client k stops reading: replies cannot be sent */
			if (cls[arg % NCLIENTS].c)
				shutdown(cls[arg % NCLIENTS].peer, SHUT_RD);
			break;
		}
	}

	/* Everybody hangs up: nothing may stay claimed. */
	for (unsigned k = 0; k < NCLIENTS; k++) {
		if (cls[k].c) {
			shutdown(cls[k].peer, SHUT_WR);
			agent_client_event(&a, cls[k].c, EPOLLIN);
			FUZZ_ASSERT(!alive(&a, cls[k].c));
			while (drain(k, 0, cls[k].seq) != 1)
				;
			cls[k].c = NULL;
		}
		close(cls[k].peer);
	}
	FUZZ_ASSERT(a.clients == NULL && a.nclients == 0);
	/* VM 1 closes what it still holds: the last closer frees */
	for (unsigned k = 0; k < NVM1; k++)
		vm1_close(rg, k);
	FUZZ_ASSERT(ivsock_listener_remove(rg, (uint32_t)l1, l1gen) == 0);
	for (uint32_t i = 0; i < rg->channel_cap; i++)
		FUZZ_ASSERT(ivsock_slot_get(&rg->channels[i].slot).state == IVSOCK_SLOT_FREE);
	for (uint32_t i = 0; i < rg->offer_cap; i++)
		FUZZ_ASSERT(ivsock_slot_get(&rg->offers[i].slot).state == IVSOCK_SLOT_FREE);
	for (uint32_t i = 0; i < rg->listener_cap; i++)
		FUZZ_ASSERT(ivsock_slot_get(&rg->listeners[i].slot).state == IVSOCK_SLOT_FREE);
	FUZZ_ASSERT(ivsock_block_pool_used(rg, 0) == 0);
	FUZZ_ASSERT(ivsock_block_pool_used(rg, 1) == 0);
	for (size_t w = 0; w < sizeof(a.ids.used) / sizeof(a.ids.used[0]); w++)
		FUZZ_ASSERT(a.ids.used[w] == 0);
	for (unsigned i = 0; i < NSOCKS; i++)
		sk_close(&sks[i]);
	fuzz_check_no_fd_leak(fds_before);
	return 0;
}
