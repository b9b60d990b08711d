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
 * agent admits root, its own uid and its --group, closes everyone else at
 * once with IVSOCK_AG_REFUSED, and caps connections per uid. Admission
 * sticks to the connection: a process that connected as root keeps it
 * after setuid().
 */

#define IVSOCK_AGENT_SOCK_ABSTRACT "ivsock-agent" /* "\0ivsock-agent" */

enum {
	IVSOCK_AG_INVALID      = 0,
	IVSOCK_AG_HELLO        = 1, /* shim -> agent: struct ivsock_ag_hello */
	IVSOCK_AG_HELLO_REPLY  = 2, /* struct ivsock_ag_hello_reply + fds:
				     * [0] region (memfd or /dev/ivsockN),
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
};

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
};

struct ivsock_ag_peer {
	uint32_t peer_id;
	uint32_t vector;
};

#endif
