/* SPDX-License-Identifier: MIT */
/*
 * QEMU's ivshmem server protocol (docs/specs/ivshmem-spec.txt), both sides.
 * Every message is one little-endian int64, optionally with one fd attached
 * by SCM_RIGHTS. Server -> client only:
 *   version (0); the client's peer ID; -1 with the region fd;
 *   then per existing peer its ID once per vector, each with an eventfd;
 *   then the client's own ID once per vector with its own eventfds;
 *   later: a peer ID with an fd = that peer's next vector (connect),
 *          a peer ID without fd = that peer disconnected.
 */
#ifndef IVSOCK_IVSHMEM_PROTO_H
#define IVSOCK_IVSHMEM_PROTO_H

#include <stdint.h>

#define IVSOCK_IVSHMEM_PROTOCOL_VERSION 0
#define IVSOCK_IVSHMEM_MAX_PEER 65535

/*
 * Send one message. fd < 0 sends none. Retries EINTR and short writes.
 * @return 0, or -errno (-EPIPE if the peer is gone; SIGPIPE never raised).
 */
int ivsock_ivshmem_send(int sock, int64_t value, int fd);

/*
 * Receive one message: *value, and *fd (-1 if none came). Handles short
 * reads and EINTR; rejects truncated control data (closing anything that
 * did arrive) and more than one fd.
 * @return 0, -ECONNRESET on orderly EOF, -EPROTO on malformed input,
 *         -EAGAIN on a non-blocking socket with nothing to read, -errno.
 */
int ivsock_ivshmem_recv(int sock, int64_t *value, int *fd);

/* Client side: the three greeting messages. */
struct ivsock_ivshmem_greeting {
	int64_t version;
	int64_t own_id;
	int shm_fd;
};

/* Read and check version, own ID (0..65535) and the region fd.
 * @return 0 or -errno (-EPROTONOSUPPORT for a version other than 0). */
int ivsock_ivshmem_client_greeting(int sock, struct ivsock_ivshmem_greeting *g);

/* Server side: send the greeting. @return 0 or -errno. */
int ivsock_ivshmem_server_greeting(int sock, int64_t own_id, int shm_fd);

#endif
