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
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "ivsock/doorbell.h"
#include "ivsock/layout.h"
#include "ivsock/msg.h"

/* Timeout of every request to the agent (IVSOCK_AGENT_TIMEOUT_MS). */
#define IVSOCK_AGENT_TIMEOUT_MS_DEFAULT 1000
#define IVSOCK_AGENT_TRUSTED_MAX 4
/* The shim's doorbell cache: entries (LRU beyond) and how long a failed
 * lookup is remembered before the agent is asked again. */
#define IVSOCK_AGENT_DB_CAP_DEFAULT 64
#define IVSOCK_AGENT_DB_NEG_MS_DEFAULT 100

/*
 * Who may be the agent and how long we wait for it. The agent is trusted
 * only if the listening socket's owner (SO_PEERCRED, checked after connect()
 * and before any byte is sent) is uid 0 or one of trusted[].
 */
struct ivsock_agent_opts {
	int timeout_ms;                       /* per request; <= 0: default */
	uint32_t ntrusted;                    /* uids trusted besides 0 */
	uid_t trusted[IVSOCK_AGENT_TRUSTED_MAX];
	uint32_t db_cap;                      /* 0: IVSOCK_AGENT_DB_CAP_DEFAULT */
	uint32_t db_neg_ms;                   /* 0: IVSOCK_AGENT_DB_NEG_MS_DEFAULT */
};

/* Defaults: trust uid 0 only, 1 s timeout. */
void ivsock_agent_opts_default(struct ivsock_agent_opts *o);
/*
 * Defaults, then the environment: IVSOCK_AGENT_UID (comma-separated numeric
 * uids also trusted as the agent; ignored in set-uid/AT_SECURE processes)
 * and IVSOCK_AGENT_TIMEOUT_MS. @return 0, or -EINVAL if a variable was
 * malformed (that variable is ignored, the rest applies).
 */
int ivsock_agent_opts_from_env(struct ivsock_agent_opts *o);

/*
 * One live connection to the agent == one agent client. The agent keeps the
 * client (its client id, vector, and every slot claimed under that id) while
 * any process holds `sock`; when the last holder closes it (exit, kill -9),
 * the agent releases the client's channels, offers and listeners.
 */
struct ivsock_agent_conn {
	int sock;                            /* SOCK_SEQPACKET to the agent; CLOEXEC,
					      * non-blocking (every call polls
					      * with a deadline) */
	struct ivsock_ag_hello_reply info;   /* validated HELLO_REPLY */
	void *map;                           /* the tables, mapped read-only */
	size_t map_size;                     /* == info.tables_size */
	int region_fd;                       /* server backend: the region memfd,
					      * blocks are mapped from it; -1 on pci */
	void *whole;                         /* server backend: the whole region,
					      * mapped once (unless IVSOCK_MAP_BLOCKS=1),
					      * blocks point into it; NULL on pci */
	struct ivsock_region region;         /* attached view of map */
	struct ivsock_doorbell *db;          /* evdb (server) or wait-only (pci:
					      * rings go through each channel's
					      * window fd); its
					      * wait_fd (non-blocking) fires on
					      * info.vector; wake-ups may be shared
					      * with other clients of that vector */
	/* private */
	pthread_mutex_t lock;                /* serialises requests on sock */
	uint32_t seq;
	void *regs;                          /* pci: mapped doorbell page, or NULL */
	struct ivsock_agent_opts opts;
	uint64_t quiet_until_ns;             /* a request timed out: fail fast until */
};

/*
 * Socket address of the agent. path NULL or "": the default abstract name
 * "\0ivsock-agent" (IVSOCK_AGENT_SOCK_ABSTRACT); "@name": abstract "\0name";
 * anything else: a filesystem path.
 * @return 0 or -ENAMETOOLONG.
 */
int ivsock_agent_sockaddr(const char *path, struct sockaddr_un *sa, socklen_t *len);

/*
 * Connect a SOCK_SEQPACKET|SOCK_CLOEXEC|SOCK_NONBLOCK socket to the agent
 * (no HELLO) and check who listens there (ivsock_agent_check_peer) before
 * anything is sent. o NULL: ivsock_agent_opts_from_env().
 * @return the fd or -errno (-ECONNREFUSED/-ENOENT: no agent there; -EPERM:
 *         the listener is not a trusted uid; -ETIMEDOUT: its backlog stayed
 *         full for the whole timeout).
 */
int ivsock_agent_dial(const char *path);
int ivsock_agent_dial_opts(const char *path, const struct ivsock_agent_opts *o);

/* Is the listener behind a connected socket a trusted agent (uid 0 or one of
 * o->trusted)? @return 0, -EPERM, or -errno of getsockopt. */
int ivsock_agent_check_peer(int sock, const struct ivsock_agent_opts *o);

/*
 * Checks of fds received from the agent, before any use:
 * region: server backend: a memfd (F_GET_SEALS works) sealed at least with
 *         F_SEAL_SHRINK (nobody can shrink it under our mapping: no SIGBUS),
 *         a regular file of at least size bytes; pci backend: a window of
 *         the guest driver (IVSOCK_IOC_WIN_INFO) onto [0, >= size) that is
 *         read-only and rings nobody.
 * eventfd: /proc/self/fd/N reads "anon_inode:[eventfd]"; without /proc: an
 *         anonymous-inode file (same inode as a fresh eventfd) that accepts
 *         an 8-byte write of 0 (a no-op on an eventfd).
 * @return 0 or -EBADFD.
 */
int ivsock_agent_check_region_fd(int fd, uint32_t backend, uint64_t size);
int ivsock_agent_check_eventfd(int fd);

/*
 * One request/reply on a dialled socket: send header+payload, receive the
 * reply of type reply_type (checked with ivsock_msg_check) into reply
 * (header included), taking at most max_fds fds (CLOEXEC) into fds. Waits
 * (poll, never a blocking send/recv) at most timeout_ms in all
 * (ivsock_agent_call: IVSOCK_AGENT_TIMEOUT_MS_DEFAULT). A late reply to an
 * earlier request (lower seq) is dropped with its fds.
 * Not locked: callers holding an ivsock_agent_conn use ivsock_agent_peer_fd()
 * or ivsock_agent_status(), which lock.
 * @return reply bytes (>= sizeof(struct ivsock_msg_hdr)) with *nfds set, or
 *         -errno (-EPROTO/-EBADMSG/-EMSGSIZE for a malformed reply,
 *         -ECONNRESET if the agent closed, -EBADE on a seq mismatch,
 *         -ETIMEDOUT, or the status of an IVSOCK_AG_REFUSED notice).
 *         The reply's own status is left to the caller.
 */
ssize_t ivsock_agent_call(int sock, uint16_t type, uint32_t seq,
			  const void *payload, uint32_t len, uint16_t reply_type,
			  void *reply, size_t reply_cap, int *fds, int max_fds, int *nfds);
ssize_t ivsock_agent_call_timeout(int sock, uint16_t type, uint32_t seq,
				  const void *payload, uint32_t len, uint16_t reply_type,
				  void *reply, size_t reply_cap, int *fds, int max_fds,
				  int *nfds, int timeout_ms);
/* The same, sending send_fd (if >= 0) with the request (SCM_RIGHTS): the
 * broker requests carry the socket they act on. Spins briefly (tens of
 * microseconds of non-blocking receives) before sleeping for the reply. */
ssize_t ivsock_agent_call_fd(int sock, uint16_t type, uint32_t seq, const void *payload,
			     uint32_t len, int send_fd, uint16_t reply_type, void *reply,
			     size_t reply_cap, int *fds, int max_fds, int *nfds, int timeout_ms);
/* One-way request (UNLISTEN, CLOSE): no reply. @return 0 or -errno. */
int ivsock_agent_send(int sock, uint16_t type, uint32_t seq, const void *payload,
		      uint32_t len, int send_fd, int timeout_ms);

/*
 * Connect to the agent at path (see ivsock_agent_sockaddr) and check it is
 * trusted (ivsock_agent_dial_opts), send HELLO, check the reply and its fds
 * (ivsock_agent_check_region_fd/_eventfd), mmap fd[0] MAP_SHARED, ivsock_region_attach() it (and check its
 * format_id), and build out->db:
 *   server backend: an eventfd doorbell whose wait_fd is fd[1] and whose
 *                   missing peers are resolved with ivsock_agent_peer_fd()
 *                   into a bounded cache (opts db_cap, LRU) keyed also by
 *                   the directory slot word of the peer's VM entry: a peer
 *                   ID reused by another VM, or a VM that died, is resolved
 *                   afresh; failed lookups are remembered db_neg_ms;
 *   pci backend:    a device doorbell on fd[0] with wait_fd fd[1] (already
 *                   bound to info.vector by the agent); it rings with one
 *                   store to the mapped doorbell register when the driver
 *                   offers it (IVSOCK_DEV_F_REGS_MAP), else IVSOCK_IOC_RING.
 * The doorbell refers back to *out: do not move or copy *out afterwards.
 * On failure nothing is left open and *out is unusable.
 * @return 0, -ECONNREFUSED/-ENOENT (no agent), -EPERM (untrusted listener:
 *         nothing was sent to it), -ETIMEDOUT (no answer in time), -EBADFD
 *         (an fd failed its check), -EACCES/-EUSERS/-EMFILE (agent refused
 *         us), region errors of ivsock_region_attach()
 *         (ivsock_region_strerror()), -ESTALE (format_id mismatch), -EPROTO,
 *         -errno.
 * ivsock_agent_connect(): opts from ivsock_agent_opts_from_env().
 */
int ivsock_agent_connect(const char *path, struct ivsock_agent_conn *out);
int ivsock_agent_connect_opts(const char *path, const struct ivsock_agent_opts *o,
			      struct ivsock_agent_conn *out);

/*
 * Ask the agent for the eventfd of (peer, vector) (server backend only); the
 * fd is checked with ivsock_agent_check_eventfd(). After a request timed out,
 * requests fail with -ETIMEDOUT at once for 5 s (a wedged agent must not
 * cost every doorbell a timeout).
 * @return a new CLOEXEC fd owned by the caller, or -errno (-EOPNOTSUPP on the
 *         pci backend, -ENOENT unknown peer/vector, -EBADFD, -ETIMEDOUT).
 */
int ivsock_agent_peer_fd(struct ivsock_agent_conn *c, uint32_t peer, uint32_t vector);

/*
 * STATUS on a connection: *json (malloc'd, NUL-terminated; free() it).
 * ivsock_agent_status_at() dials path, asks, and hangs up (no HELLO).
 * @return 0 or -errno.
 */
int ivsock_agent_status(struct ivsock_agent_conn *c, char **json);
int ivsock_agent_status_at(const char *path, char **json);

/* ---- the broker (docs/broker.md) ----
 * Each call sends the socket it acts on; the agent checks it with the kernel
 * (its addresses, SO_COOKIE). Every call has the connection's deadline and
 * the same fail-fast rule as ivsock_agent_peer_fd(). */

/* Register listening socket sock. @return 0 with the registry slot, or
 * -errno (-EDQUOT per-uid limit, -ENOSPC table full, -EINVAL not listening). */
int ivsock_agent_listen(struct ivsock_agent_conn *c, int sock, uint32_t *idx, uint32_t *gen);
/* Withdraw it (one way). */
int ivsock_agent_unlisten(struct ivsock_agent_conn *c, uint32_t idx, uint32_t gen);
/*
 * sock (bound to its source, not yet connected) is about to connect to
 * (dst, dport): ask for a channel and the offer; with IVSOCK_AG_OPEN_MARK in
 * flags, sock need not be bound: the agent posts a marker, and the offer
 * once ivsock_agent_port() says the socket is connecting.
 * @return 0 with *r and
 * *wfd (the window, pci; -1 on the server backend), or -errno:
 * -EHOSTUNREACH (not a VM of the domain), -ECONNREFUSED (no shimmed
 * listener there), -EDQUOT, -ENOSPC (rings or tables full), -EINVAL.
 */
int ivsock_agent_open(struct ivsock_agent_conn *c, int sock, const struct ivsock_addr *dst,
		      uint16_t dport, uint32_t size_class, uint16_t flags, struct ivsock_ag_chan *r,
		      int *wfd);
/* sock (of an OPEN_MARK channel) is connecting now: post the offer. One
 * way. @return 0 or -errno (not sent). */
int ivsock_agent_port(struct ivsock_agent_conn *c, int sock, uint32_t idx, uint32_t gen);
/* sock was just accepted: take its offer. @return 0 with *r, *wfd, or
 * -ENOENT (no offer: plain TCP), -errno. */
int ivsock_agent_accept(struct ivsock_agent_conn *c, int sock, struct ivsock_ag_chan *r,
			int *wfd);
/* Connector: give up waiting for the acceptor. @return 0 (the fallback is
 * ours: take the bytes back, then ivsock_agent_close_end), -ESTALE (the
 * acceptor won: the rings are the stream), -errno. */
int ivsock_agent_abandon(struct ivsock_agent_conn *c, int sock, uint32_t idx, uint32_t gen);
/* Our end is released (one way; sock may be -1 when c is the client that
 * opened or accepted it). */
int ivsock_agent_close_end(struct ivsock_agent_conn *c, int sock, uint32_t idx, uint32_t gen,
			   int side, bool reset);
/* Connector: sock (established to dst:dport, a shimmed peer) stays on TCP
 * for now: record it as a TCP entry (docs/switch.md, "Connections on TCP")
 * so that operators see it and can promote it; ivsock_agent_close_end()
 * (side connector) frees it. @return 0 with *idx, *gen, -ENOSPC (no room
 * for entries), -EDQUOT, -EINVAL (not such a socket), -EHOSTUNREACH, -errno. */
int ivsock_agent_track(struct ivsock_agent_conn *c, int sock, const struct ivsock_addr *dst,
		       uint16_t dport, uint32_t *idx, uint32_t *gen);
/* A new window onto an end whose socket we hold (after exec). */
int ivsock_agent_attach(struct ivsock_agent_conn *c, int sock, uint32_t idx, uint32_t gen,
			int side, struct ivsock_ag_chan *r, int *wfd);

/* A block mapped for one end: the whole block read-only, our half of it
 * read-write (writes elsewhere fault: the window says so on pci). */
struct ivsock_block_map {
	void *base;
	size_t len;
	uint32_t ring_size;
	int side;
};
/*
 * Map the block r describes: through the window wfd (pci; checked with
 * IVSOCK_IOC_WIN_INFO: its length and writable part must be exactly the
 * block and our half), or through our region fd at r->block_off (server;
 * checked against the region's class table). @return 0 or -EPROTO (the
 * reply does not describe a block of this region), -errno of mmap.
 */
int ivsock_agent_map_block(struct ivsock_agent_conn *c, const struct ivsock_ag_chan *r, int wfd,
			   struct ivsock_block_map *m);
void ivsock_agent_unmap_block(struct ivsock_block_map *m);

/* Unmap, free the doorbell, close the socket. NULL and repeated calls are
 * fine (c must have gone through ivsock_agent_connect(), even a failed one). */
void ivsock_agent_close(struct ivsock_agent_conn *c);

#endif
