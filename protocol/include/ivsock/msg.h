/* SPDX-License-Identifier: MIT */
/*
 * Framing of ivsock's own control messages (VM mailbox <-> ivsockd, shim <->
 * agent, ivsockctl <-> ivsockd): magic, version, type (0 is invalid),
 * payload length, sequence number and status. Every received message is
 * checked with ivsock_msg_check() before its payload is looked at.
 */
#ifndef IVSOCK_MSG_H
#define IVSOCK_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "ivsock/layout.h"

#define IVSOCK_MSG_MAGIC   0x4d535649U /* "IVSM" */
#define IVSOCK_MSG_VERSION 1U
#define IVSOCK_MSG_MAX     65536U      /* header + payload */

struct ivsock_msg_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t type;     /* IVSOCK_MB_* / IVSOCK_AG_*; 0 is invalid */
	uint32_t len;      /* payload bytes following the header */
	uint32_t seq;      /* echoed in the reply */
	int32_t status;    /* replies: 0 or -errno */
	uint32_t reserved; /* 0 */
};

/* Fill a header. */
void ivsock_msg_init(struct ivsock_msg_hdr *h, uint16_t type, uint32_t len, uint32_t seq);

/*
 * Check n received bytes: magic, version, type != 0, reserved == 0, and that
 * len matches exactly (n == sizeof(hdr) + len) and is at least min_len when
 * type matches expect_type (expect_type 0: any type, no length floor).
 * @return 0 or -EPROTO / -EBADMSG (wrong type) / -EMSGSIZE.
 */
int ivsock_msg_check(const void *buf, size_t n, uint16_t expect_type, uint32_t min_len);

/* ------------- VM control mailbox: agent -> ivsockd ------------- */

enum {
	IVSOCK_MB_INVALID    = 0,
	IVSOCK_MB_REGISTER   = 1, /* payload: struct ivsock_mb_register */
	IVSOCK_MB_UNREGISTER = 2, /* no payload: agent leaves, addresses dropped */
	IVSOCK_MB_PING       = 3, /* no payload: checks the daemon answers */
};

struct ivsock_mb_register {
	uint32_t agent_version;
	uint32_t naddrs;                    /* <= IVSOCK_VM_MAX_ADDRS */
	struct ivsock_addr addrs[IVSOCK_VM_MAX_ADDRS];
	char hostname[IVSOCK_NAME_MAX];     /* informational; NUL-terminated */
};

/* ------------- shim <-> agent (UNIX SOCK_SEQPACKET) ------------- */

/*
 * Trust, both ways, decided at connect time (SO_PEERCRED): the shim sends
 * nothing to a listener that is not root (or a uid it was told to trust,
 * IVSOCK_AGENT_UID) and checks every fd it receives (agent_client.h); the
 * agent admits every local user by default (its --allow-user/--allow-group
 * options restrict that), closes anyone else at once with IVSOCK_AG_REFUSED,
 * and caps connections, channels and ring memory per uid.
 *
 * The agent is the broker of the control plane (docs/broker.md): a process
 * never writes the shared tables; it asks the agent, proving with the socket
 * itself (passed as SCM_RIGHTS, the agent reads its addresses from the
 * kernel) that it acts on its own connection. It gets back a window onto
 * exactly that connection's block and maps the tables read-only.
 */

#define IVSOCK_AGENT_SOCK_ABSTRACT "ivsock-agent" /* "\0ivsock-agent" */

enum {
	IVSOCK_AG_INVALID      = 0,
	IVSOCK_AG_HELLO        = 1, /* shim -> agent: struct ivsock_ag_hello */
	IVSOCK_AG_HELLO_REPLY  = 2, /* struct ivsock_ag_hello_reply + fds:
				     * [0] the tables (pci: a read-only window
				     *     onto [0, tables_size); server: the
				     *     region memfd, mapped by offset),
				     * [1] our wait eventfd */
	IVSOCK_AG_PEER_FD      = 3, /* shim -> agent: struct ivsock_ag_peer */
	IVSOCK_AG_PEER_FD_REPLY = 4, /* status; fd: the eventfd of (peer, vector) */
	IVSOCK_AG_STATUS       = 5, /* -> agent: no payload */
	IVSOCK_AG_STATUS_REPLY = 6, /* JSON text payload (a non-root client
				     * sees only its own uid's clients) */
	IVSOCK_AG_REFUSED      = 7, /* agent -> shim, unsolicited, seq 0, no
				     * payload: status -EACCES (not admitted),
				     * -EUSERS (per-uid cap), -EMFILE (agent out
				     * of fds); the agent closes right after */
	/* ---- the broker (docs/broker.md); fd[0] of a request is the
	 *      socket it acts on, checked by the agent with the kernel ---- */
	IVSOCK_AG_LISTEN       = 9,  /* struct ivsock_ag_listen + fd: a listening
				      * TCP socket -> LISTEN_REPLY */
	IVSOCK_AG_LISTEN_REPLY = 10, /* struct ivsock_ag_listen_reply */
	IVSOCK_AG_UNLISTEN     = 11, /* struct ivsock_ag_listener_ref, one way */
	IVSOCK_AG_OPEN         = 13, /* struct ivsock_ag_open + fd: a TCP socket
				      * not connected yet (MARK: PORT follows;
				      * else bound to its source) -> CHAN_REPLY */
	IVSOCK_AG_CHAN_REPLY   = 14, /* struct ivsock_ag_chan + fds: [0] the
				      * window onto the block (pci only) */
	IVSOCK_AG_ACCEPT       = 15, /* no payload + fd: an accepted TCP socket
				      * -> CHAN_REPLY (-ENOENT: no offer) */
	IVSOCK_AG_ABANDON      = 17, /* struct ivsock_ag_chan_ref (+ fd) ->
				      * ABANDON_REPLY: 0 the fallback is ours,
				      * -ESTALE the acceptor won */
	IVSOCK_AG_ABANDON_REPLY = 18,
	IVSOCK_AG_CLOSE        = 19, /* struct ivsock_ag_chan_ref (+ fd), one
				      * way: this end is released */
	IVSOCK_AG_ATTACH       = 21, /* struct ivsock_ag_chan_ref + fd: the
				      * socket of an end we hold (inherited
				      * across exec) -> CHAN_REPLY */
	IVSOCK_AG_PORT         = 23, /* struct ivsock_ag_chan_ref + fd: the
				      * socket of an OPEN_MARK channel, now
				      * connecting: post its offer; one way */
	IVSOCK_AG_TRACK        = 25, /* struct ivsock_ag_open (flags 0) + fd: an
				      * established TCP socket of ours to a
				      * shimmed peer, on TCP: record it as a
				      * TCP entry (listed, promotable) ->
				      * CHAN_REPLY (ring_size 0, no window);
				      * CLOSE of the entry frees it */
};

/* Highest request type the agent knows (fuzzers, tests). */
#define IVSOCK_AG_TYPE_MAX IVSOCK_AG_TRACK

enum { IVSOCK_BACKEND_SERVER = 1, IVSOCK_BACKEND_PCI = 2 };

struct ivsock_ag_hello {
	uint32_t pid;
	uint32_t flags;
};

struct ivsock_ag_hello_reply {
	uint32_t backend;        /* IVSOCK_BACKEND_*: how fd[0] is mapped and rung */
	uint32_t vm_index;       /* our directory entry */
	uint32_t vm_gen;
	uint32_t peer_id;        /* our ivshmem peer ID */
	uint32_t client_id;      /* owner id for every slot we claim */
	uint32_t vector;         /* our doorbell vector: peers ring (peer_id, vector) */
	uint64_t region_size;
	uint64_t format_id;      /* must equal the superblock's */
	uint64_t tables_size;    /* bytes of fd[0] to map read-only */
	uint32_t uid;            /* who the agent thinks we are (SO_PEERCRED) */
	uint32_t reserved;
};

struct ivsock_ag_peer {
	uint32_t peer_id;
	uint32_t vector;
};

/* IVSOCK_AG_LISTEN: the address comes from the socket, not from here. */
struct ivsock_ag_listen {
	uint32_t flags;          /* 0 */
	uint32_t reserved;       /* 0 */
};

struct ivsock_ag_listen_reply {
	uint32_t listener;       /* registry slot, for UNLISTEN */
	uint32_t listener_gen;
};

struct ivsock_ag_listener_ref {
	uint32_t listener;
	uint32_t listener_gen;
};

/* IVSOCK_AG_OPEN: where the socket is about to connect. The source comes
 * from the socket (getsockname), so nobody can post an offer under another
 * socket's 4-tuple. */
struct ivsock_ag_open {
	struct ivsock_addr dst;
	uint16_t dport;          /* host order */
	uint16_t flags;          /* IVSOCK_AG_OPEN_* */
	uint32_t size_class;     /* preferred class: an index below
				  * IVSOCK_CLASS_MAX, a ring size in bytes (the
				  * smallest class at least that big, else the
				  * largest), or IVSOCK_AG_CLASS_DEFAULT */
};
/* The socket is not connected yet (nor bound to a port, maybe): the agent
 * opens the channel and posts a marker; the caller connects the socket
 * itself, then sends PORT, and the agent posts the offer (docs/broker.md,
 * "The late offer"). Without it the socket must be bound to its port and
 * not connected, connecting or connected to dst. */
#define IVSOCK_AG_OPEN_MARK 0x1
#define IVSOCK_AG_CLASS_DEFAULT 0xffffffffU

/* One channel end, as the agent granted it. */
struct ivsock_ag_chan {
	uint32_t channel;        /* (channel, channel_gen) names the connection */
	uint32_t channel_gen;
	uint32_t side;           /* IVSOCK_SIDE_CONNECTOR / _ACCEPTOR */
	uint32_t ring_size;      /* data bytes per ring of the block's class */
	uint64_t block_off;      /* server backend: offset of the block in the
				  * region fd; pci: 0 (offset in the window) */
	uint64_t block_len;      /* 2 * (4096 + ring_size) */
	uint32_t peer_vm;        /* directory index of the other end's VM */
	uint32_t peer_id;        /* acceptor: the connector's doorbell address */
	uint32_t peer_vector;    /*   (connector: learnt from the block later) */
	uint32_t flags;          /* IVSOCK_AG_CHAN_* */
};
enum { IVSOCK_AG_CHAN_CONNECTED = 1U << 0 }; /* ATTACH: both ends attached */

struct ivsock_ag_chan_ref {
	uint32_t channel;
	uint32_t channel_gen;
	uint32_t side;
	uint32_t flags;          /* CLOSE: IVSOCK_AG_CLOSE_RESET */
};
enum { IVSOCK_AG_CLOSE_RESET = 1U << 0 };

#endif
