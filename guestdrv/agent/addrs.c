// SPDX-License-Identifier: MIT
/* Address collection (getifaddrs) and change notification (rtnetlink). */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include "addrs.h"

static bool skip_addr(const struct ivsock_addr *a)
{
	if (a->family == IVSOCK_AF_INET)
		return a->bytes[0] == 127 || (a->bytes[0] == 0 && a->bytes[1] == 0 &&
					      a->bytes[2] == 0 && a->bytes[3] == 0);
	/* ::, ::1, fe80::/10 */
	if (a->bytes[0] == 0xfe && (a->bytes[1] & 0xc0) == 0x80)
		return true;
	for (int i = 0; i < 15; i++)
		if (a->bytes[i])
			return false;
	return a->bytes[15] <= 1;
}

static void add_family(const struct ifaddrs *list, int af, struct ivsock_mb_register *reg)
{
	for (const struct ifaddrs *i = list; i; i = i->ifa_next) {
		struct ivsock_addr a;
		uint16_t port;
		uint32_t k;

		if (!i->ifa_addr || i->ifa_addr->sa_family != af)
			continue;
		if (!(i->ifa_flags & IFF_UP) || (i->ifa_flags & IFF_LOOPBACK))
			continue;
		if (ivsock_addr_from_sockaddr(&a, &port, i->ifa_addr,
					      af == AF_INET ? sizeof(struct sockaddr_in)
							    : sizeof(struct sockaddr_in6)) < 0)
			continue;
		if (skip_addr(&a))
			continue;
		for (k = 0; k < reg->naddrs; k++)
			if (ivsock_addr_equal(&reg->addrs[k], &a))
				break;
		if (k < reg->naddrs || reg->naddrs >= IVSOCK_VM_MAX_ADDRS)
			continue;
		reg->addrs[reg->naddrs++] = a;
	}
}

int agent_addrs_from_list(const struct ifaddrs *list, struct ivsock_mb_register *reg)
{
	reg->naddrs = 0;
	memset(reg->addrs, 0, sizeof(reg->addrs));
	add_family(list, AF_INET, reg);
	add_family(list, AF_INET6, reg);
	return (int)reg->naddrs;
}

int agent_addrs_collect(struct ivsock_mb_register *reg)
{
	struct ifaddrs *list;
	int n;

	if (getifaddrs(&list) < 0)
		return -errno;
	n = agent_addrs_from_list(list, reg);
	freeifaddrs(list);
	return n;
}

int agent_addrs_watch_open(void)
{
	struct sockaddr_nl sa = {
		.nl_family = AF_NETLINK,
		.nl_groups = RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_LINK,
	};
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);

	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = -errno;

		close(fd);
		return e;
	}
	return fd;
}

int agent_addrs_watch_drain(int fd)
{
	char buf[8192] __attribute__((aligned(__alignof__(struct nlmsghdr))));
	int changed = 0;

	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		struct nlmsghdr *h;
		int len;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return changed;
			if (errno == ENOBUFS) { /* overrun: assume a change */
				changed = 1;
				continue;
			}
			return -errno;
		}
		len = (int)n;
		for (h = (struct nlmsghdr *)buf; NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
			switch (h->nlmsg_type) {
			case RTM_NEWADDR:
			case RTM_DELADDR:
			case RTM_NEWLINK:
			case RTM_DELLINK:
				changed = 1;
				break;
			}
		}
	}
}
