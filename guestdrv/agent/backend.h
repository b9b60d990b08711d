/* SPDX-License-Identifier: MIT */
/*
 * How the agent reaches the shared region and the doorbells. Two backends:
 * "server" connects to ivsockd's domain socket as an ivshmem client, exactly
 * as QEMU does (a simulated VM); "pci" opens /dev/ivsockN inside a real VM.
 * Everything above this interface is backend-agnostic.
 */
#ifndef AGENT_BACKEND_H
#define AGENT_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "ivsock/doorbell.h"
#include "ivsock/layout.h"
#include "ivsock/msg.h"

struct agent_backend;

struct agent_backend_ops {
	const char *name;
	uint32_t kind;                    /* IVSOCK_BACKEND_* */
	/* Attach: map the region, learn our peer ID and vectors, make db.
	 * spec: socket path (server) or device path (pci). @return 0 or -errno. */
	int (*open)(struct agent_backend *b, const char *spec);
	/* ctl_fd ready: process the server's messages (server) or notice the
	 * device is gone (pci). @return 0, -ECONNRESET once the server closed
	 * the socket (keep serving), -ENODEV once the device is gone (the
	 * region is unmapped under us: stop). */
	int (*handle_ctl)(struct agent_backend *b);
	/* For a new client: fds[0] what it maps the tables from (pci: a
	 * read-only window onto [0, tables_size); server: the region memfd),
	 * fds[1] its wait eventfd signalled on vector (both new and CLOEXEC;
	 * the caller sends and closes them); *keep: an fd the agent keeps for
	 * the client's lifetime (pci: its own open of the device, where the
	 * eventfd is bound) or -1. */
	int (*client_fds)(struct agent_backend *b, uint32_t vector, uint64_t tables_size,
			  int fds[2], int *keep);
	/* A window onto [off, off + len) of the region, writable over
	 * [off + wr_off, off + wr_off + wr_len), ringing only ring_peer
	 * (IVSOCK_WIN_NO_RING: nobody). pci: *fd = a new window fd; server:
	 * *fd = -1, the client maps its region fd (nothing is enforced).
	 * @return 0 or -errno. */
	int (*window)(struct agent_backend *b, uint64_t off, uint64_t len, uint64_t wr_off,
		      uint64_t wr_len, uint32_t ring_peer, int *fd);
	/* Every window onto [off, off + len) stops working (pci); no-op on
	 * the server backend. */
	void (*revoke)(struct agent_backend *b, uint64_t off, uint64_t len);
	/* A new CLOEXEC fd to signal (peer, vector), or -errno. */
	int (*peer_fd)(struct agent_backend *b, uint32_t peer, uint32_t vector);
	/* Drop doorbells of peers no longer alive in the directory. @return
	 * how many peers were forgotten. */
	int (*rescan)(struct agent_backend *b);
	void (*close)(struct agent_backend *b);
};

struct agent_backend {
	const struct agent_backend_ops *ops;
	uint8_t *base;                    /* region mapping */
	size_t size;
	struct ivsock_region rg;          /* attached view */
	uint32_t peer_id;                 /* our ivshmem peer ID */
	uint32_t vectors;                 /* doorbell vectors we have */
	uint32_t vm_index;                /* our directory entry */
	uint32_t vm_gen;
	struct ivsock_doorbell *db;       /* rings anyone; wait_fd = our vector 0 */
	int ctl_fd;                       /* poll for handle_ctl, or -1 */
	void *priv;
};

extern const struct agent_backend_ops agent_backend_server_ops;
extern const struct agent_backend_ops agent_backend_pci_ops;

/*
 * Shared by both backends after mapping: attach the region (logging a clear
 * reason on failure) and find our own directory entry, retrying for up to
 * timeout_ms. @return 0 or -errno.
 */
int agent_backend_attach(struct agent_backend *b, int timeout_ms);

/* Ring (peer, vector) through the backend's doorbell; errors are logged at
 * debug level (a dead peer is not an error). Fits ivsock_ring_fn. */
void agent_backend_ring(void *backend, uint32_t peer, uint32_t vector);

#endif
