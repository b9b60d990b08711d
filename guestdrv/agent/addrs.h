/* SPDX-License-Identifier: MIT */
/*
 * The VM's addresses as the agent registers them with ivsockd: every IPv4
 * and global/ULA IPv6 address of an up, non-loopback interface of this
 * network namespace (getifaddrs), and an rtnetlink socket that says when
 * they change.
 */
#ifndef AGENT_ADDRS_H
#define AGENT_ADDRS_H

#include <ifaddrs.h>

#include "ivsock/msg.h"

/*
 * Fill reg->naddrs/addrs from an ifaddrs list: IPv4 first, then IPv6, at
 * most IVSOCK_VM_MAX_ADDRS, duplicates dropped; loopback, link-local IPv6
 * and interfaces that are down are skipped. @return the count.
 */
int agent_addrs_from_list(const struct ifaddrs *list, struct ivsock_mb_register *reg);

/* Same from getifaddrs(). @return count or -errno. */
int agent_addrs_collect(struct ivsock_mb_register *reg);

/* Open a non-blocking NETLINK_ROUTE socket subscribed to address changes.
 * @return fd or -errno. */
int agent_addrs_watch_open(void);
/* Read everything pending. @return 1 if an address was added/removed, 0 if
 * not, -errno. */
int agent_addrs_watch_drain(int fd);

#endif
