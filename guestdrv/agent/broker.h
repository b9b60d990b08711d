/* SPDX-License-Identifier: MIT */
/*
 * The agent as broker of its VM's control plane (docs/broker.md): listener
 * registration, offers, accept, abandon, close and re-attach are requests
 * from shim processes, each carrying the socket it acts on; the agent checks
 * that socket with the kernel, writes the shared tables, records the owner
 * (client, uid, socket cookie), enforces per-uid limits, and hands back a
 * window onto exactly the connection's block.
 */
#ifndef AGENT_BROKER_H
#define AGENT_BROKER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "ivsock/layout.h"
#include "ivsock/msg.h"

struct agent;
struct agent_client;

/* A socket as the kernel describes it (sockcheck.c). */
struct broker_sock {
	uint64_t cookie;          /* SO_COOKIE: the socket's identity */
	struct ivsock_addr local, peer;
	uint16_t lport, pport;
	bool listening;           /* SO_ACCEPTCONN */
	bool connected;           /* getpeername() works (ESTABLISHED & co) */
	bool v6only;
};

/* @return 0 for a TCP/IP socket (out filled), -EBADF (no fd), -ENOTSOCK,
 *         -EPROTONOSUPPORT (not TCP over IPv4/IPv6), -EAFNOSUPPORT. */
int broker_sock_inspect(int fd, struct broker_sock *out);

/* The source address the kernel picks toward (dst, dport) (a socket bound
 * to a wildcard address gets it at connect). @return 0 or -errno. */
int broker_route_source(const struct ivsock_addr *dst, uint16_t dport, struct ivsock_addr *src);

/* Per-uid limits (0: none). Root is not limited. */
struct broker_limits {
	uint32_t max_chans;       /* channel ends one uid may hold */
	uint32_t max_listeners;   /* listeners one uid may register */
	uint32_t ring_share;      /* percent of each size class's per-VM quota
				   * one uid may hold (1..100) */
};

/*
 * Handle one broker request (types IVSOCK_AG_LISTEN .. IVSOCK_AG_ATTACH) of
 * client c: the header was checked (ivsock_msg_check), payload holds
 * h->len bytes, sock is fd[0] of the message or -1 (always closed here).
 * Replies (if the type has one) are sent on c->fd. @return 0, or -EPROTO if
 * the request was malformed (the caller disconnects the client).
 */
int broker_handle(struct agent *a, struct agent_client *c, const struct ivsock_msg_hdr *h,
		  const void *payload, int sock);

/* Client c is gone: revoke its windows, release its listeners, offers and
 * channel ends (ivsock_*_release_owner), forget its counters. */
void broker_client_gone(struct agent *a, struct agent_client *c);

#endif
