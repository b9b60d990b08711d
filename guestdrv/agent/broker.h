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
	int family;               /* AF_INET or AF_INET6 */
	uint8_t state;            /* TCP_INFO's tcpi_state (TCP_LISTEN, ...) */
	bool listening;           /* TCP_LISTEN */
	bool connected;           /* past SYN_SENT: getpeername() works */
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

/* late.c: offers that come after the acceptor asked (docs/broker.md). */
#define BROKER_LATE_MAX    256
#define BROKER_HELD_MAX    64
struct broker_late {              /* an ACCEPT answered "no offer" */
	struct ivsock_tuple t;    /* the connector's view of the connection */
	uint64_t until_ns;        /* 0: free */
};
struct broker_held {              /* an ACCEPT whose answer waits */
	uint32_t client, seq;
	struct ivsock_tuple t;
	uint64_t cookie;          /* the accepted socket's */
	uint64_t until_ns;        /* 0: free */
};

/* The end of an ACCEPT (broker.c): rc 0 = offer (chan, cgen) of VM owner
 * taken for the socket with this cookie, else why not; replies to c. */
void broker_accept_finish(struct agent *a, struct agent_client *c, uint32_t seq, int rc,
			  const struct ivsock_tuple *t, uint64_t cookie, uint32_t chan,
			  uint32_t cgen, uint8_t owner);
struct agent_client *broker_client_by_id(struct agent *a, uint32_t id);

/* The acceptor wants no channel (ACCEPT found none, or found one it cannot
 * take): abandon channel (chan, cgen) and ring its connector, which moves to
 * TCP at once. */
void broker_refuse_offer(struct agent *a, uint32_t chan, uint32_t cgen);

/* An ACCEPT of c for t found no offer: defer the answer if t's source is a
 * VM of the domain. @return true if held. */
bool broker_hold_accept(struct agent *a, struct agent_client *c, uint32_t seq,
			const struct ivsock_tuple *t, uint64_t cookie);

/* Client gone: its held ACCEPTs are dropped unanswered. */
void broker_held_client_gone(struct agent *a, uint32_t client);

/* An ACCEPT for t was answered "no offer": remember t for a while (only
 * if it comes from a VM of the domain). */
void broker_late_note(struct agent *a, const struct ivsock_tuple *t);

/* Answer the held ACCEPTs whose offer came or whose time ran out, refuse
 * late offers, forget expired notes. @return 0 when nothing is pending,
 * else the nanoseconds until this should run again. */
uint64_t broker_pending_check(struct agent *a);

#endif
