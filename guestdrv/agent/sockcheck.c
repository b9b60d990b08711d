// SPDX-License-Identifier: MIT
/* What a socket passed with a broker request really is, asked of the kernel:
 * the request's claims about addresses are never believed. */
#include <errno.h>
#include <time.h>
#include <fcntl.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "broker.h"

#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif

static int getint(int fd, int level, int name, int *v)
{
	socklen_t l = sizeof(*v);

	return getsockopt(fd, level, name, v, &l) < 0 ? -errno : 0;
}

int broker_sock_inspect(int fd, struct broker_sock *out)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss), il;
	struct tcp_info ti;
	int dom = 0, proto = 0;
	socklen_t cl = sizeof(out->cookie);

	memset(out, 0, sizeof(*out));
	if (fd < 0)
		return -EBADF;
	/* Six questions, each on every request: SO_DOMAIN fails on anything
	 * but a socket, SO_PROTOCOL TCP means a stream socket, and TCP_INFO
	 * answers listening and connecting at once. */
	if (getint(fd, SOL_SOCKET, SO_DOMAIN, &dom) < 0 ||
	    getint(fd, SOL_SOCKET, SO_PROTOCOL, &proto) < 0)
		return -ENOTSOCK;
	if ((dom != AF_INET && dom != AF_INET6) || proto != IPPROTO_TCP)
		return -EPROTONOSUPPORT;
	memset(&ti, 0, sizeof(ti));
	il = sizeof(ti);
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &il) < 0 || il < 1)
		return -EPROTONOSUPPORT;
	out->family = dom;
	out->state = ti.tcpi_state;
	out->listening = ti.tcpi_state == TCP_LISTEN;
	if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, &out->cookie, &cl) < 0 || !out->cookie)
		return -ENOTSOCK;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0 ||
	    ivsock_addr_from_sockaddr(&out->local, &out->lport, (struct sockaddr *)&ss, sl) < 0)
		return -EAFNOSUPPORT;
	if (dom == AF_INET6) {
		int v6only = 0;

		if (getint(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only) == 0)
			out->v6only = v6only != 0;
	}
	sl = sizeof(ss);
	if (!out->listening && ti.tcpi_state != TCP_CLOSE && ti.tcpi_state != TCP_SYN_SENT &&
	    getpeername(fd, (struct sockaddr *)&ss, &sl) == 0 &&
	    ivsock_addr_from_sockaddr(&out->peer, &out->pport, (struct sockaddr *)&ss, sl) == 0)
		out->connected = true;
	return 0;
}

/* The last few answers, for a second: a connection-rate workload asks for
 * one destination thousands of times a second, and each lookup costs four
 * system calls. A stale answer only costs the marker its use (docs/broker.md,
 * "The late offer"): the source is read from the socket after connect. */
#define ROUTE_CACHE 8
#define ROUTE_KEEP_NS 1000000000ULL
static struct {
	struct ivsock_addr dst, src;
	uint64_t when;
} route_cache[ROUTE_CACHE];
static unsigned route_next;

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int route_lookup(const struct ivsock_addr *dst, uint16_t dport, struct ivsock_addr *src);

int broker_route_source(const struct ivsock_addr *dst, uint16_t dport, struct ivsock_addr *src)
{
	uint64_t now = mono_ns();
	int rc;

	for (unsigned i = 0; i < ROUTE_CACHE; i++)
		if (route_cache[i].when && now - route_cache[i].when < ROUTE_KEEP_NS &&
		    ivsock_addr_equal(&route_cache[i].dst, dst)) {
			*src = route_cache[i].src;
			return 0;
		}
	rc = route_lookup(dst, dport, src);
	if (rc == 0) {
		unsigned i = route_next++ % ROUTE_CACHE;

		route_cache[i].dst = *dst;
		route_cache[i].src = *src;
		route_cache[i].when = now;
	}
	return rc;
}

static int route_lookup(const struct ivsock_addr *dst, uint16_t dport, struct ivsock_addr *src)
{
	struct sockaddr_storage ss, out;
	socklen_t sl, ol = sizeof(out);
	uint16_t port;
	int u, rc = 0;

	memset(&ss, 0, sizeof(ss));
	if (dst->family == IVSOCK_AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;

		a->sin_family = AF_INET;
		a->sin_port = htons(dport);
		memcpy(&a->sin_addr, dst->bytes, 4);
		sl = sizeof(*a);
	} else if (dst->family == IVSOCK_AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons(dport);
		memcpy(&a->sin6_addr, dst->bytes, 16);
		sl = sizeof(*a);
	} else {
		return -EAFNOSUPPORT;
	}
	u = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (u < 0)
		return -errno;
	if (connect(u, (struct sockaddr *)&ss, sl) < 0 ||
	    getsockname(u, (struct sockaddr *)&out, &ol) < 0)
		rc = -errno;
	else if (ivsock_addr_from_sockaddr(src, &port, (struct sockaddr *)&out, ol) < 0)
		rc = -EAFNOSUPPORT;
	close(u);
	return rc;
}
