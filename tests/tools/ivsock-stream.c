// SPDX-License-Identifier: MIT
/*
 * ivsock-stream: stream checksummed bytes through an ivsock channel, set up
 * exactly as the shim does it (DESIGN §6, docs/broker.md): the receiver
 * listens on TCP and has the agent register the listener; the sender binds,
 * asks the agent for a channel (which posts the offer keyed by the TCP
 * 4-tuple), connects; the receiver accepts and asks the agent for the offer
 * of the accepted socket. Each side maps only its window onto the block.
 * The bytes then go through the rings only.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "ivsock/agent_client.h"
#include "ivsock/channel.h"
#include "ivsock/directory.h"
#include "ivsock/listener.h"
#include "ivsock/offer.h"

#define STREAM_MAGIC 0x54535649U /* "IVST" */
#define CHUNK        (64 * 1024)
#define WAIT_MS      100         /* a lost doorbell costs at most this */

/* First bytes on the connector -> acceptor ring. */
struct stream_hdr {
	uint32_t magic;
	uint32_t version;
	uint64_t bytes;
	uint64_t seed;
};

enum { EX_OK = 0, EX_ERR = 1, EX_NOCHAN = 2, EX_RESET = 3, EX_SHORT = 4, EX_BAD = 5 };

struct opts {
	const char *agent;
	unsigned long spin;
	unsigned long count;
	uint64_t seed;
	int quiet;
};

/* ---------------- data: a PRNG byte stream and FNV-1a ---------------- */

struct prng {
	uint64_t s;
	uint8_t buf[8];
	unsigned int left;
	uint64_t pos;       /* bytes produced (for --fill) */
};

/* --fill HEX: the stream is this pattern repeated instead of PRNG bytes
 * (a test that looks for a connection's bytes where they must not be). */
static uint8_t g_fill[32];
static size_t g_fill_len;

static void prng_fill(struct prng *p, uint8_t *out, size_t n)
{
	if (g_fill_len) {
		for (size_t i = 0; i < n; i++)
			out[i] = g_fill[p->pos++ % g_fill_len];
		return;
	}
	while (n) {
		if (p->left == 0) {
			/* xorshift64* */
			uint64_t x = p->s;

			x ^= x >> 12;
			x ^= x << 25;
			x ^= x >> 27;
			p->s = x;
			x *= 0x2545f4914f6cdd1dULL;
			memcpy(p->buf, &x, 8);
			p->left = 8;
		}
		*out++ = p->buf[8 - p->left--];
		n--;
	}
}

static uint64_t fnv1a(uint64_t h, const uint8_t *b, size_t n)
{
	while (n--) {
		h ^= *b++;
		h *= 0x100000001b3ULL;
	}
	return h;
}

#define FNV_INIT 0xcbf29ce484222325ULL

/* ---------------- waiting: spin, then sleep on the doorbell ---------------- */

/* Doorbells rung, sleeps ended by a doorbell, sleeps ended by the timeout
 * (printed as a STATS line: the tests check that doorbells really work). */
static struct {
	unsigned long rung, woken, timeouts;
	struct timespec t0;
} stats;

static void stats_print(uint64_t bytes)
{
	struct timespec t1;
	double s;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	s = (double)(t1.tv_sec - stats.t0.tv_sec) + (t1.tv_nsec - stats.t0.tv_nsec) / 1e9;
	printf("STATS rung=%lu woken=%lu timeouts=%lu ms=%.0f MBps=%.1f\n", stats.rung,
	       stats.woken, stats.timeouts, s * 1e3, s > 0 ? (double)bytes / s / 1e6 : 0.0);
}

/* Sleep on our wait fd (and the TCP socket, for liveness), at most WAIT_MS.
 * @return true if the TCP connection was closed by the other side. */
static bool doorbell_wait(struct ivsock_agent_conn *c, int tcp)
{
	struct pollfd p[2] = {
		{ .fd = ivsock_doorbell_wait_fd(c->db), .events = POLLIN },
		{ .fd = tcp, .events = POLLRDHUP },
	};

	if (poll(p, 2, WAIT_MS) <= 0) {
		stats.timeouts++;
		return false;
	}
	if ((p[0].revents & POLLIN) && ivsock_eventfd_drain(p[0].fd) > 0)
		stats.woken++;
	return (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

/* The window of the connection being streamed (pci: rings go through it). */
static int g_wfd = -1;

static void ring_peer(struct ivsock_agent_conn *c, const struct ivsock_end_id *peer)
{
	int rc = g_wfd >= 0 ? ivsock_window_ring(g_wfd, peer->vector)
			    : ivsock_doorbell_notify(c->db, peer->peer_id, peer->vector);

	stats.rung++;
	if (rc < 0 && rc != -ENOENT)
		fprintf(stderr, "ivsock-stream: doorbell (%u, %u): %s\n", peer->peer_id,
			peer->vector, strerror(-rc));
}

/* ---------------- addresses ---------------- */

/* Numeric IPv4 or IPv6 only (no resolver: the tool is linked statically). */
static int parse_addr(const char *host, uint16_t port, struct sockaddr_storage *ss,
		      socklen_t *len)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		*len = sizeof(*s4);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		*len = sizeof(*s6);
		return 0;
	}
	return -EINVAL;
}

/* Map the block the agent granted and build the view of our end. */
static int attach(struct ivsock_agent_conn *c, const struct ivsock_ag_chan *r, int wfd,
		  struct ivsock_block_map *m, struct ivsock_chan_view *v)
{
	int rc = ivsock_agent_map_block(c, r, wfd, m);

	if (rc == 0)
		rc = ivsock_chan_view_block(v, m->base, r->ring_size, (int)r->side, r->channel,
					    r->channel_gen);
	if (rc < 0) {
		ivsock_agent_unmap_block(m);
		if (wfd >= 0)
			close(wfd);
		return rc;
	}
	g_wfd = wfd;
	if (r->peer_id <= 65535 && r->peer_vector <= 65535) {
		v->peer.peer_id = r->peer_id;
		v->peer.vector = r->peer_vector;
	}
	return 0;
}

/* The other end's doorbell address, from its ctl page (it may not be
 * attached yet: then there is nobody to ring). */
static bool learn_peer(struct ivsock_agent_conn *c, struct ivsock_chan_view *v)
{
	uint32_t peer, vec;

	if (ivsock_chan_learn_peer(&c->region, v) < 0 ||
	    ivsock_chan_peer_doorbell(NULL, v, &peer, &vec) < 0)
		return false;
	v->peer.peer_id = peer;
	v->peer.vector = vec;
	return true;
}

static void release(struct ivsock_agent_conn *c, struct ivsock_block_map *m,
		    struct ivsock_chan_view *v, bool reset)
{
	ivsock_chan_end_close_rings(v, reset);
	ivsock_agent_unmap_block(m);
	if (g_wfd >= 0) {
		close(g_wfd);
		g_wfd = -1;
	}
	ivsock_agent_close_end(c, -1, v->idx, v->gen, v->side, reset);
}

/* ---------------- sender ---------------- */

static int do_send(const struct opts *o, const char *host, uint16_t port, uint64_t bytes)
{
	struct ivsock_agent_conn c;
	struct sockaddr_storage dst, src;
	socklen_t dlen, slen = sizeof(src);
	struct ivsock_tuple t = { 0 };
	struct ivsock_chan_view v;
	struct ivsock_block_map m = { 0 };
	struct ivsock_ag_chan r;
	struct stream_hdr h = { STREAM_MAGIC, 1, bytes, o->seed };
	struct prng g = { .s = o->seed | 1 };
	uint8_t *buf;
	uint64_t sent = 0, sum = FNV_INIT;
	bool peer_known = false;
	size_t have = 0, off = 0;
	int fd = -1, probe, rc, vm, wfd = -1, ret = EX_ERR;
	uint16_t p;

	if (parse_addr(host, port, &dst, &dlen) < 0) {
		fprintf(stderr, "ivsock-stream: bad address %s\n", host);
		return EX_ERR;
	}
	rc = ivsock_agent_connect(o->agent, &c);
	if (rc < 0) {
		fprintf(stderr, "ivsock-stream: agent: %s\n",
			rc == -EBADF || rc == -EPROTONOSUPPORT || rc == -EMSGSIZE
			? ivsock_region_strerror(rc) : strerror(-rc));
		return EX_ERR;
	}
	buf = malloc(CHUNK);

	/* The source address the kernel will use toward dst, then a real bind
	 * so the 4-tuple is known before connect(). */
	probe = socket(dst.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (probe < 0 || connect(probe, (struct sockaddr *)&dst, dlen) < 0 ||
	    getsockname(probe, (struct sockaddr *)&src, &slen) < 0) {
		perror("ivsock-stream: route to destination");
		goto out;
	}
	close(probe);
	((struct sockaddr_in *)&src)->sin_port = 0; /* same offset in sockaddr_in6 */
	fd = socket(dst.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&src, slen) < 0 ||
	    getsockname(fd, (struct sockaddr *)&src, &slen) < 0) {
		perror("ivsock-stream: bind");
		goto out;
	}
	ivsock_addr_from_sockaddr(&t.src, &t.sport, (struct sockaddr *)&src, slen);
	ivsock_addr_from_sockaddr(&t.dst, &p, (struct sockaddr *)&dst, dlen);
	t.dport = p;

	vm = ivsock_addr_is_loopback(&t.dst) ? (int)c.info.vm_index
					    : ivsock_dir_find_addr(&c.region, &t.dst);
	if (vm < 0 || ivsock_listener_find(&c.region, (uint32_t)vm, &t.dst, t.dport) < 0) {
		fprintf(stderr, "ivsock-stream: no ivsock listener at %s port %u (%s): "
			"a shim would use plain TCP\n", host, port,
			vm < 0 ? "address not in the directory" : "not registered");
		ret = EX_NOCHAN;
		goto out;
	}
	rc = ivsock_agent_open(&c, fd, &t.dst, t.dport, IVSOCK_AG_CLASS_DEFAULT, 0, &r, &wfd);
	if (rc == 0)
		rc = attach(&c, &r, wfd, &m, &v);
	if (rc < 0) {
		fprintf(stderr, "ivsock-stream: channel: %s\n", strerror(-rc));
		ret = EX_NOCHAN;
		goto out;
	}
	if (connect(fd, (struct sockaddr *)&dst, dlen) < 0) {
		perror("ivsock-stream: connect");
		ivsock_agent_abandon(&c, fd, v.idx, v.gen);
		release(&c, &m, &v, true);
		goto out;
	}

	/* Stream: header, then the PRNG bytes. */
	clock_gettime(CLOCK_MONOTONIC, &stats.t0);
	memcpy(buf, &h, sizeof(h));
	have = sizeof(h);
	while (off < have || sent < bytes) {
		ssize_t n;

		if (off == have) {
			size_t k = bytes - sent < CHUNK ? (size_t)(bytes - sent) : CHUNK;

			prng_fill(&g, buf, k);
			sum = fnv1a(sum, buf, k);
			sent += k;
			have = k;
			off = 0;
		}
		if (!peer_known)
			peer_known = learn_peer(&c, &v);
		n = ivsock_ring_write(&v.tx, buf + off, have - off, false);
		if (n < 0) {
			fprintf(stderr, "ivsock-stream: write: %s after %llu bytes\n",
				strerror((int)-n), (unsigned long long)(sent - (have - off)));
			ret = EX_RESET;
			goto close;
		}
		off += (size_t)n;
		if (n > 0) {
			ivsock_chan_count(NULL, &v, (uint64_t)n, 0);
			/* Only an attached acceptor can be asleep; one that attaches
			 * later sees the data before it ever sleeps. */
			if (peer_known && ivsock_ring_consumer_needs_wake(&v.tx))
				ring_peer(&c, &v.peer);
			continue;
		}
		for (unsigned long i = 0; i < o->spin && ivsock_ring_writable(&v.tx) == 0; i++)
			ivsock_cpu_relax();
		rc = ivsock_ring_producer_prepare_sleep(&v.tx);
		if (rc == 1 && doorbell_wait(&c, fd) &&
		    ivsock_agent_abandon(&c, fd, v.idx, v.gen) == 0) {
			/* The acceptor closed TCP without ever attaching. */
			fprintf(stderr, "ivsock-stream: the receiver never took the offer\n");
			ret = EX_NOCHAN;
			goto close;
		}
	}
	ivsock_ring_close_write(&v.tx, false);
	if (!peer_known)
		peer_known = learn_peer(&c, &v);
	if (peer_known && ivsock_ring_consumer_needs_wake(&v.tx))
		ring_peer(&c, &v.peer);
	if (!o->quiet) {
		printf("SENT bytes=%llu checksum=%016llx\n", (unsigned long long)bytes,
		       (unsigned long long)sum);
		stats_print(bytes);
	}
	ret = EX_OK;
close:
	ivsock_chan_end_close_rings(&v, ret != EX_OK);
	if (peer_known)
		ring_peer(&c, &v.peer);
	release(&c, &m, &v, ret != EX_OK);
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	ivsock_agent_close(&c);
	fflush(stdout);
	return ret;
}

/* ---------------- receiver ---------------- */

/* Read exactly n bytes (header) or until the stream ends. */
static ssize_t ring_read_wait(const struct opts *o, struct ivsock_agent_conn *c,
			      struct ivsock_chan_view *v, int tcp, void *buf, size_t n)
{
	for (;;) {
		ssize_t r = ivsock_ring_read(&v->rx, buf, n);

		if (r > 0) {
			if (ivsock_ring_producer_needs_wake(&v->rx))
				ring_peer(c, &v->peer);
			return r;
		}
		if (r != -EAGAIN)
			return r;
		for (unsigned long i = 0; i < o->spin && ivsock_ring_readable(&v->rx) == 0; i++)
			ivsock_cpu_relax();
		if (ivsock_ring_consumer_prepare_sleep(&v->rx) == 1)
			doorbell_wait(c, tcp);
	}
}

static int serve_one(const struct opts *o, struct ivsock_agent_conn *c, int lfd)
{
	struct sockaddr_storage local, peer;
	socklen_t llen = sizeof(local), plen = sizeof(peer);
	struct ivsock_chan_view v;
	struct ivsock_block_map m = { 0 };
	struct ivsock_ag_chan r;
	struct stream_hdr h;
	struct prng g;
	uint8_t *buf = malloc(CHUNK), *want = malloc(CHUNK);
	uint64_t got = 0, sum = FNV_INIT;
	size_t hgot = 0;
	ssize_t n;
	int fd, rc, wfd = -1, ret = EX_ERR;

	fd = accept4(lfd, (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC);
	if (fd < 0 || getsockname(fd, (struct sockaddr *)&local, &llen) < 0) {
		perror("ivsock-stream: accept");
		goto out;
	}
	memset(&stats, 0, sizeof(stats));
	clock_gettime(CLOCK_MONOTONIC, &stats.t0);
	rc = ivsock_agent_accept(c, fd, &r, &wfd);
	if (rc < 0) {
		printf("NOCHAN no offer for this connection (plain TCP): %s\n", strerror(-rc));
		ret = EX_NOCHAN;
		goto out;
	}
	rc = attach(c, &r, wfd, &m, &v);
	if (rc < 0) {
		printf("NOCHAN offer's channel unusable: %s\n", strerror(-rc));
		ivsock_agent_close_end(c, -1, r.channel, r.channel_gen, IVSOCK_SIDE_ACCEPTOR, true);
		ret = EX_NOCHAN;
		goto out;
	}
	while (hgot < sizeof(h)) {
		n = ring_read_wait(o, c, &v, fd, (uint8_t *)&h + hgot, sizeof(h) - hgot);
		if (n <= 0)
			break;
		hgot += (size_t)n;
	}
	if (hgot < sizeof(h) || h.magic != STREAM_MAGIC || h.version != 1) {
		printf("FAIL bad or missing stream header (%zu bytes)\n", hgot);
		ret = hgot < sizeof(h) ? EX_SHORT : EX_BAD;
		goto close;
	}
	g = (struct prng){ .s = h.seed | 1 };
	for (;;) {
		n = ring_read_wait(o, c, &v, fd, buf, CHUNK);
		if (n <= 0)
			break;
		prng_fill(&g, want, (size_t)n);
		if (memcmp(buf, want, (size_t)n) != 0 || got + (uint64_t)n > h.bytes) {
			printf("FAIL data mismatch in bytes %llu..%llu\n",
			       (unsigned long long)got, (unsigned long long)(got + (uint64_t)n));
			ret = EX_BAD;
			goto close;
		}
		sum = fnv1a(sum, buf, (size_t)n);
		got += (uint64_t)n;
	}
	if (n == -ECONNRESET) {
		printf("RESET after bytes=%llu of %llu\n", (unsigned long long)got,
		       (unsigned long long)h.bytes);
		ret = EX_RESET;
	} else if (n < 0) {
		printf("FAIL read: %s after bytes=%llu\n", strerror((int)-n),
		       (unsigned long long)got);
	} else if (got != h.bytes) {
		printf("EOF after bytes=%llu of %llu\n", (unsigned long long)got,
		       (unsigned long long)h.bytes);
		ret = EX_SHORT;
	} else {
		printf("OK bytes=%llu checksum=%016llx\n", (unsigned long long)got,
		       (unsigned long long)sum);
		stats_print(got);
		ret = EX_OK;
	}
close:
	ivsock_chan_count(NULL, &v, 0, got);
	ivsock_chan_end_close_rings(&v, ret != EX_OK);
	ring_peer(c, &v.peer);
	release(c, &m, &v, ret != EX_OK);
out:
	fflush(stdout);
	if (fd >= 0)
		close(fd);
	free(buf);
	free(want);
	return ret;
}

static int do_listen(const struct opts *o, uint16_t port)
{
	struct sockaddr_in6 sa6 = { .sin6_family = AF_INET6, .sin6_port = htons(port),
				    .sin6_addr = IN6ADDR_ANY_INIT };
	struct sockaddr_in sa4 = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct ivsock_addr any = { .family = IVSOCK_AF_INET6 };
	struct ivsock_agent_conn c;
	uint32_t lidx, lgen;
	int lfd, one = 1, zero = 0, li, rc, ret = EX_OK;

	rc = ivsock_agent_connect(o->agent, &c);
	if (rc < 0) {
		fprintf(stderr, "ivsock-stream: agent: %s\n", strerror(-rc));
		return EX_ERR;
	}
	/* Dual-stack if the kernel has IPv6, else IPv4 only. */
	lfd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd >= 0) {
		setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		setsockopt(lfd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
		rc = bind(lfd, (struct sockaddr *)&sa6, sizeof(sa6));
	}
	if (lfd < 0 || rc < 0) {
		if (lfd >= 0)
			close(lfd);
		any.family = IVSOCK_AF_INET;
		lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		rc = lfd < 0 ? -1 : bind(lfd, (struct sockaddr *)&sa4, sizeof(sa4));
	}
	if (rc < 0 || listen(lfd, 16) < 0) {
		perror("ivsock-stream: listen");
		ivsock_agent_close(&c);
		return EX_ERR;
	}
	(void)any; /* the agent reads the address from the socket */
	li = ivsock_agent_listen(&c, lfd, &lidx, &lgen);
	if (li == 0)
		li = (int)lidx;
	if (li < 0) {
		fprintf(stderr, "ivsock-stream: listener registry: %s\n", strerror(-li));
		ivsock_agent_close(&c);
		return EX_ERR;
	}
	printf("LISTENING port=%u vm=%u peer=%u client=%u vector=%u\n", port,
	       c.info.vm_index, c.info.peer_id, c.info.client_id, c.info.vector);
	fflush(stdout);
	for (unsigned long i = 0; o->count == 0 || i < o->count; i++) {
		rc = serve_one(o, &c, lfd);
		if (rc != EX_OK)
			ret = rc;
	}
	ivsock_agent_unlisten(&c, (uint32_t)li, lgen);
	close(lfd);
	ivsock_agent_close(&c);
	return ret;
}

static void usage(FILE *f)
{
	fprintf(f,
"usage: ivsock-stream [options] listen PORT\n"
"       ivsock-stream [options] send HOST PORT BYTES\n"
"  -a, --agent PATH|@NAME  agent socket (default @" IVSOCK_AGENT_SOCK_ABSTRACT ")\n"
"  -n, --count N           listen: connections to serve, 0 = forever (default 1)\n"
"  -s, --seed N            send: PRNG seed (default: random)\n"
"  -p, --spin N            polls before sleeping on the doorbell (default 20000)\n"
"      --fill HEX          stream this pattern repeated instead of PRNG bytes\n"
"                          (both ends; for tests that look for the bytes)\n"
"  -q, --quiet             send: no SENT line\n"
"Exit: 0 ok, 1 error, 2 no channel (plain TCP), 3 reset, 4 short stream,\n"
"      5 corrupt data.\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "agent", required_argument, NULL, 'a' },
		{ "count", required_argument, NULL, 'n' },
		{ "seed", required_argument, NULL, 's' },
		{ "spin", required_argument, NULL, 'p' },
		{ "fill", required_argument, NULL, 'F' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	struct opts o = { .spin = 20000, .count = 1 };
	struct timespec ts;
	int c;

	clock_gettime(CLOCK_REALTIME, &ts);
	o.seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32) ^ (uint64_t)ts.tv_sec;
	while ((c = getopt_long(argc, argv, "a:n:s:p:qh", lo, NULL)) != -1) {
		switch (c) {
		case 'a': o.agent = optarg; break;
		case 'n': o.count = strtoul(optarg, NULL, 0); break;
		case 's': o.seed = strtoull(optarg, NULL, 0); break;
		case 'F':
			g_fill_len = 0;
			for (size_t i = 0; optarg[2 * i] && optarg[2 * i + 1] &&
			     g_fill_len < sizeof(g_fill); i++) {
				unsigned v;

				if (sscanf(optarg + 2 * i, "%2x", &v) != 1)
					break;
				g_fill[g_fill_len++] = (uint8_t)v;
			}
			break;
		case 'p': o.spin = strtoul(optarg, NULL, 0); break;
		case 'q': o.quiet = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return EX_ERR;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc == 2 && strcmp(argv[0], "listen") == 0)
		return do_listen(&o, (uint16_t)strtoul(argv[1], NULL, 10));
	if (argc == 4 && strcmp(argv[0], "send") == 0)
		return do_send(&o, argv[1], (uint16_t)strtoul(argv[2], NULL, 10),
			       strtoull(argv[3], NULL, 0));
	usage(stderr);
	return EX_ERR;
}
