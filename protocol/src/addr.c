// SPDX-License-Identifier: MIT
/* Conversions and comparisons of the wire address/tuple types. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "ivsock/layout.h"

bool ivsock_addr_equal(const struct ivsock_addr *a, const struct ivsock_addr *b)
{
	size_t n;

	if (a->family != b->family)
		return false;
	n = a->family == IVSOCK_AF_INET ? 4 : 16;
	return memcmp(a->bytes, b->bytes, n) == 0;
}

bool ivsock_addr_is_any(const struct ivsock_addr *a)
{
	static const uint8_t zero[16];

	return memcmp(a->bytes, zero, a->family == IVSOCK_AF_INET ? 4 : 16) == 0;
}

bool ivsock_addr_is_loopback(const struct ivsock_addr *a)
{
	static const uint8_t lo6[16] = { [15] = 1 };

	if (a->family == IVSOCK_AF_INET)
		return a->bytes[0] == 127;
	return a->family == IVSOCK_AF_INET6 && !memcmp(a->bytes, lo6, 16);
}

int ivsock_addr_from_sockaddr(struct ivsock_addr *a, uint16_t *port,
			      const struct sockaddr *sa, unsigned int salen)
{
	memset(a, 0, sizeof(*a));
	if (sa->sa_family == AF_INET && salen >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		a->family = IVSOCK_AF_INET;
		memcpy(a->bytes, &in->sin_addr, 4);
		if (port)
			*port = ntohs(in->sin_port);
		return 0;
	}
	if (sa->sa_family == AF_INET6 && salen >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
			a->family = IVSOCK_AF_INET;
			memcpy(a->bytes, &in6->sin6_addr.s6_addr[12], 4);
		} else {
			a->family = IVSOCK_AF_INET6;
			memcpy(a->bytes, &in6->sin6_addr, 16);
		}
		if (port)
			*port = ntohs(in6->sin6_port);
		return 0;
	}
	return -EAFNOSUPPORT;
}

const char *ivsock_addr_str(const struct ivsock_addr *a, char *buf, size_t len)
{
	int af = a->family == IVSOCK_AF_INET ? AF_INET :
		 a->family == IVSOCK_AF_INET6 ? AF_INET6 : -1;

	if (af < 0 || !inet_ntop(af, a->bytes, buf, (socklen_t)len))
		snprintf(buf, len, "?");
	return buf;
}

/* FNV-1a over the fields that define the tuple. */
uint32_t ivsock_tuple_hash(const struct ivsock_tuple *t)
{
	uint32_t h = 2166136261u;
	const uint8_t *parts[2] = { t->src.bytes, t->dst.bytes };
	uint16_t ports[2] = { t->sport, t->dport };
	int i, j;

	h = (h ^ t->src.family) * 16777619u;
	for (i = 0; i < 2; i++)
		for (j = 0; j < 16; j++)
			h = (h ^ parts[i][j]) * 16777619u;
	for (i = 0; i < 2; i++) {
		h = (h ^ (ports[i] & 0xff)) * 16777619u;
		h = (h ^ (ports[i] >> 8)) * 16777619u;
	}
	return h;
}
