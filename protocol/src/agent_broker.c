// SPDX-License-Identifier: MIT
/* Client side of the broker requests (docs/broker.md) and the mapping of the
 * block an agent grants: everything a process does to the control plane
 * goes through these; it never writes the shared tables itself. */
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "ivsock/agent_client.h"
#include "ivsock/channel.h"
#include "ivsock/ivsock_dev.h"

#define QUIET_NS 5000000000ULL /* after a timeout: fail fast for 5 s */

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* One locked request/reply; reply holds header + payload (cap bytes). */
static int call(struct ivsock_agent_conn *c, uint16_t type, const void *payload, uint32_t len,
		int sock, uint16_t rtype, void *reply, size_t cap, int *fd)
{
	int fds[1] = { -1 }, nfds = 0;
	ssize_t n;

	if (fd)
		*fd = -1;
	pthread_mutex_lock(&c->lock);
	if (c->quiet_until_ns && mono_ns() < c->quiet_until_ns) {
		pthread_mutex_unlock(&c->lock);
		return -ETIMEDOUT;
	}
	n = ivsock_agent_call_fd(c->sock, type, ++c->seq, payload, len, sock, rtype, reply, cap,
				 fds, fd ? 1 : 0, &nfds, c->opts.timeout_ms);
	if (n == -ETIMEDOUT)
		c->quiet_until_ns = mono_ns() + QUIET_NS;
	pthread_mutex_unlock(&c->lock);
	if (n < 0)
		return (int)n;
	if (((struct ivsock_msg_hdr *)reply)->status < 0) {
		if (nfds)
			close(fds[0]);
		return ((struct ivsock_msg_hdr *)reply)->status;
	}
	if (fd && nfds)
		*fd = fds[0];
	return (int)n;
}

static int send_one_way(struct ivsock_agent_conn *c, uint16_t type, const void *payload,
			uint32_t len, int sock)
{
	int rc;

	pthread_mutex_lock(&c->lock);
	rc = ivsock_agent_send(c->sock, type, ++c->seq, payload, len, sock, c->opts.timeout_ms);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int ivsock_agent_listen(struct ivsock_agent_conn *c, int sock, uint32_t *idx, uint32_t *gen)
{
	struct ivsock_ag_listen req = { 0 };
	struct {
		struct ivsock_msg_hdr h;
		struct ivsock_ag_listen_reply r;
	} rep;
	int n = call(c, IVSOCK_AG_LISTEN, &req, sizeof(req), sock, IVSOCK_AG_LISTEN_REPLY, &rep,
		     sizeof(rep), NULL);

	if (n < 0)
		return n;
	if ((size_t)n != sizeof(rep) || rep.r.listener >= c->region.listener_cap)
		return -EPROTO;
	*idx = rep.r.listener;
	*gen = rep.r.listener_gen;
	return 0;
}

int ivsock_agent_unlisten(struct ivsock_agent_conn *c, uint32_t idx, uint32_t gen)
{
	struct ivsock_ag_listener_ref req = { .listener = idx, .listener_gen = gen };

	return send_one_way(c, IVSOCK_AG_UNLISTEN, &req, sizeof(req), -1);
}

/* A CHAN_REPLY that does not describe a channel of our region is refused. */
static int chan_reply(struct ivsock_agent_conn *c, int n, const struct ivsock_ag_chan *r,
		      int side, int *wfd)
{
	bool pci = c->info.backend == IVSOCK_BACKEND_PCI;

	if (n < 0)
		return n;
	if ((size_t)n != sizeof(struct ivsock_msg_hdr) + sizeof(*r) ||
	    r->channel >= c->region.channel_cap || r->side != (uint32_t)side ||
	    (pci && *wfd < 0) || (!pci && *wfd >= 0)) {
		if (*wfd >= 0)
			close(*wfd);
		*wfd = -1;
		return -EPROTO;
	}
	return 0;
}

int ivsock_agent_open(struct ivsock_agent_conn *c, int sock, const struct ivsock_addr *dst,
		      uint16_t dport, uint32_t size_class, uint16_t flags, struct ivsock_ag_chan *r,
		      int *wfd)
{
	struct ivsock_ag_open req;
	struct {
		struct ivsock_msg_hdr h;
		struct ivsock_ag_chan r;
	} rep;
	int n;

	memset(&req, 0, sizeof(req));
	req.dst = *dst;
	req.dport = dport;
	req.flags = flags;
	req.size_class = size_class;
	n = call(c, IVSOCK_AG_OPEN, &req, sizeof(req), sock, IVSOCK_AG_CHAN_REPLY, &rep,
		 sizeof(rep), wfd);
	*r = rep.r;
	return chan_reply(c, n, r, IVSOCK_SIDE_CONNECTOR, wfd);
}

int ivsock_agent_track(struct ivsock_agent_conn *c, int sock, const struct ivsock_addr *dst,
		       uint16_t dport, uint32_t *idx, uint32_t *gen)
{
	struct ivsock_ag_open req;
	struct {
		struct ivsock_msg_hdr h;
		struct ivsock_ag_chan r;
	} rep;
	int n;

	memset(&req, 0, sizeof(req));
	req.dst = *dst;
	req.dport = dport;
	n = call(c, IVSOCK_AG_TRACK, &req, sizeof(req), sock, IVSOCK_AG_CHAN_REPLY, &rep,
		 sizeof(rep), NULL);
	if (n < 0)
		return n;
	if ((size_t)n != sizeof(rep) || rep.r.channel >= c->region.channel_cap ||
	    rep.r.side != IVSOCK_SIDE_CONNECTOR || rep.r.ring_size || !rep.r.channel_gen)
		return -EPROTO;
	*idx = rep.r.channel;
	*gen = rep.r.channel_gen;
	return 0;
}

int ivsock_agent_accept(struct ivsock_agent_conn *c, int sock, struct ivsock_ag_chan *r,
			int *wfd)
{
	struct {
		struct ivsock_msg_hdr h;
		struct ivsock_ag_chan r;
	} rep;
	int n = call(c, IVSOCK_AG_ACCEPT, NULL, 0, sock, IVSOCK_AG_CHAN_REPLY, &rep,
		     sizeof(rep), wfd);

	*r = rep.r;
	return chan_reply(c, n, r, IVSOCK_SIDE_ACCEPTOR, wfd);
}

int ivsock_agent_abandon(struct ivsock_agent_conn *c, int sock, uint32_t idx, uint32_t gen)
{
	struct ivsock_ag_chan_ref req = { .channel = idx, .channel_gen = gen,
					  .side = IVSOCK_SIDE_CONNECTOR };
	struct ivsock_msg_hdr h;
	int n = call(c, IVSOCK_AG_ABANDON, &req, sizeof(req), sock, IVSOCK_AG_ABANDON_REPLY, &h,
		     sizeof(h), NULL);

	return n < 0 ? n : 0;
}

int ivsock_agent_close_end(struct ivsock_agent_conn *c, int sock, uint32_t idx, uint32_t gen,
			   int side, bool reset)
{
	struct ivsock_ag_chan_ref req = { .channel = idx, .channel_gen = gen,
					  .side = (uint32_t)side,
					  .flags = reset ? IVSOCK_AG_CLOSE_RESET : 0 };

	return send_one_way(c, IVSOCK_AG_CLOSE, &req, sizeof(req), sock);
}

int ivsock_agent_port(struct ivsock_agent_conn *c, int sock, uint32_t idx, uint32_t gen)
{
	struct ivsock_ag_chan_ref req = { .channel = idx, .channel_gen = gen,
					  .side = IVSOCK_SIDE_CONNECTOR };

	return send_one_way(c, IVSOCK_AG_PORT, &req, sizeof(req), sock);
}

int ivsock_agent_attach(struct ivsock_agent_conn *c, int sock, uint32_t idx, uint32_t gen,
			int side, struct ivsock_ag_chan *r, int *wfd)
{
	struct ivsock_ag_chan_ref req = { .channel = idx, .channel_gen = gen,
					  .side = (uint32_t)side };
	struct {
		struct ivsock_msg_hdr h;
		struct ivsock_ag_chan r;
	} rep;
	int n = call(c, IVSOCK_AG_ATTACH, &req, sizeof(req), sock, IVSOCK_AG_CHAN_REPLY, &rep,
		     sizeof(rep), wfd);

	*r = rep.r;
	return chan_reply(c, n, r, side, wfd);
}

/* Is [off, off + len) exactly a block of ring size rs in this region? */
static bool is_block(const struct ivsock_region *rg, uint64_t off, uint64_t len, uint32_t rs)
{
	for (uint32_t k = 0; k < rg->nclasses; k++) {
		const struct ivsock_class_desc *cl = &rg->class[k];
		uint64_t span = (uint64_t)cl->blocks_per_vm * rg->vm_cap * cl->block_size;

		if (cl->ring_size != rs || cl->block_size != len)
			continue;
		if (off >= cl->pool_off && off - cl->pool_off < span &&
		    (off - cl->pool_off) % cl->block_size == 0)
			return true;
	}
	return false;
}

int ivsock_agent_map_block(struct ivsock_agent_conn *c, const struct ivsock_ag_chan *r, int wfd,
			   struct ivsock_block_map *m)
{
	const struct ivsock_region *rg = &c->region;
	uint64_t half, len = r->block_len, base_off;
	int fd, side = (int)r->side;
	uint8_t *p;

	memset(m, 0, sizeof(*m));
	if (side > 1 || r->ring_size < IVSOCK_BLOCK_RING_MIN ||
	    r->ring_size > IVSOCK_BLOCK_RING_MAX || (r->ring_size & (r->ring_size - 1)) ||
	    len != ivsock_block_size(r->ring_size))
		return -EPROTO;
	half = ivsock_block_half_off(r->ring_size, side);
	if (c->info.backend == IVSOCK_BACKEND_PCI) {
		struct ivsock_dev_window w;

		/* the kernel says what this window is: exactly a block of
		 * ours, writable over our half only */
		if (wfd < 0 || ioctl(wfd, IVSOCK_IOC_WIN_INFO, &w) < 0 || w.length != len ||
		    w.wr_offset != half || w.wr_length != ivsock_block_half_len(r->ring_size) ||
		    !is_block(rg, w.offset, len, r->ring_size))
			return -EPROTO;
		fd = wfd;
		base_off = 0;
	} else {
		if (c->region_fd < 0 || !is_block(rg, r->block_off, len, r->ring_size))
			return -EPROTO;
		if (c->whole) {
			/* server backend: nothing is enforced on a memfd (the
			 * process holds it read-write); the region is mapped once
			 * and a block costs no system call (docs/lab.md) */
			m->base = (uint8_t *)c->whole + r->block_off;
			m->len = 0;
			m->ring_size = r->ring_size;
			m->side = side;
			return 0;
		}
		fd = c->region_fd;
		base_off = r->block_off;
	}
	p = mmap(NULL, (size_t)len, PROT_READ, MAP_SHARED, fd, (off_t)base_off);
	if (p == MAP_FAILED)
		return -errno;
	if (mmap(p + half, (size_t)ivsock_block_half_len(r->ring_size), PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_FIXED, fd, (off_t)(base_off + half)) == MAP_FAILED) {
		int e = errno;

		munmap(p, (size_t)len);
		return -e;
	}
	m->base = p;
	m->len = (size_t)len;
	m->ring_size = r->ring_size;
	m->side = side;
	return 0;
}

void ivsock_agent_unmap_block(struct ivsock_block_map *m)
{
	if (m && m->base) {
		if (m->len)
			munmap(m->base, m->len);
		m->base = NULL;
	}
}
