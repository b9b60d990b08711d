/* SPDX-License-Identifier: MIT */
/*
 * Client side of the shim <-> agent protocol (msg.h, IVSOCK_AG_*): connect to
 * the VM's ivsock-agent, say HELLO, map the region it hands over and build a
 * doorbell for it. Used by the LD_PRELOAD shim and by test tools. No globals;
 * every fd is close-on-exec; one connection may be used from several threads.
 */
#ifndef IVSOCK_AGENT_CLIENT_H
#define IVSOCK_AGENT_CLIENT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "ivsock/doorbell.h"
#include "ivsock/layout.h"
#include "ivsock/msg.h"

/*
 * One live connection to the agent == one agent client. The agent keeps the
 * client (its client id, vector, and every slot claimed under that id) while
 * any process holds `sock`; when the last holder closes it (exit, kill -9),
 * the agent releases the client's channels, offers and listeners.
 */
struct ivsock_agent_conn {
	int sock;                            /* SOCK_SEQPACKET to the agent; CLOEXEC */
	struct ivsock_ag_hello_reply info;   /* validated HELLO_REPLY */
	void *map;                           /* region mapping (MAP_SHARED) */
	size_t map_size;
	struct ivsock_region region;         /* attached view of map */
	struct ivsock_doorbell *db;          /* evdb (server) or devdb (pci); its
					      * wait_fd (non-blocking) fires on
					      * info.vector; wake-ups may be shared
					      * with other clients of that vector */
	/* private */
	pthread_mutex_t lock;                /* serialises requests on sock */
	uint32_t seq;
	void *regs;                          /* pci: mapped doorbell page, or NULL */
};

/*
 * Socket address of the agent. path NULL or "": the default abstract name
 * "\0ivsock-agent" (IVSOCK_AGENT_SOCK_ABSTRACT); "@name": abstract "\0name";
 * anything else: a filesystem path.
 * @return 0 or -ENAMETOOLONG.
 */
int ivsock_agent_sockaddr(const char *path, struct sockaddr_un *sa, socklen_t *len);

/* Connect a SOCK_SEQPACKET|SOCK_CLOEXEC socket to the agent (no HELLO).
 * @return the fd or -errno (-ECONNREFUSED/-ENOENT: no agent there). */
int ivsock_agent_dial(const char *path);

/*
 * One request/reply on a dialled socket: send header+payload, receive the
 * reply of type reply_type (checked with ivsock_msg_check) into reply
 * (header included), taking at most max_fds fds (CLOEXEC) into fds.
 * Not locked: callers holding an ivsock_agent_conn use ivsock_agent_peer_fd()
 * or ivsock_agent_status(), which lock.
 * @return reply bytes (>= sizeof(struct ivsock_msg_hdr)) with *nfds set, or
 *         -errno (-EPROTO/-EBADMSG/-EMSGSIZE for a malformed reply,
 *         -ECONNRESET if the agent closed, -EBADE on a seq mismatch).
 *         The reply's own status is left to the caller.
 */
ssize_t ivsock_agent_call(int sock, uint16_t type, uint32_t seq,
			  const void *payload, uint32_t len, uint16_t reply_type,
			  void *reply, size_t reply_cap, int *fds, int max_fds, int *nfds);

/*
 * Connect to the agent at path (see ivsock_agent_sockaddr), send HELLO, check
 * the reply, mmap fd[0] MAP_SHARED, ivsock_region_attach() it (and check its
 * format_id), and build out->db:
 *   server backend: an eventfd doorbell whose wait_fd is fd[1] and whose
 *                   missing peers are resolved with ivsock_agent_peer_fd();
 *   pci backend:    a device doorbell on fd[0] with wait_fd fd[1] (already
 *                   bound to info.vector by the agent); it rings with one
 *                   store to the mapped doorbell register when the driver
 *                   offers it (IVSOCK_DEV_F_REGS_MAP), else IVSOCK_IOC_RING.
 * The doorbell refers back to *out: do not move or copy *out afterwards.
 * On failure nothing is left open and *out is unusable.
 * @return 0, -ECONNREFUSED/-ENOENT (no agent), -EACCES (agent refused us),
 *         region errors of ivsock_region_attach() (ivsock_region_strerror()),
 *         -ESTALE (format_id mismatch), -EPROTO, -errno.
 */
int ivsock_agent_connect(const char *path, struct ivsock_agent_conn *out);

/*
 * Ask the agent for the eventfd of (peer, vector) (server backend only).
 * @return a new CLOEXEC fd owned by the caller, or -errno (-EOPNOTSUPP on the
 *         pci backend, -ENOENT unknown peer/vector).
 */
int ivsock_agent_peer_fd(struct ivsock_agent_conn *c, uint32_t peer, uint32_t vector);

/*
 * STATUS on a connection: *json (malloc'd, NUL-terminated; free() it).
 * ivsock_agent_status_at() dials path, asks, and hangs up (no HELLO).
 * @return 0 or -errno.
 */
int ivsock_agent_status(struct ivsock_agent_conn *c, char **json);
int ivsock_agent_status_at(const char *path, char **json);

/* Unmap, free the doorbell, close the socket. NULL and repeated calls are
 * fine (c must have gone through ivsock_agent_connect(), even a failed one). */
void ivsock_agent_close(struct ivsock_agent_conn *c);

#endif
