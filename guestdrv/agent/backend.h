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
	/* fds[0]: region fd, fds[1]: wait eventfd signalled on vector, for a new
	 * client (both new and CLOEXEC; the caller sends and closes them). */
	int (*client_fds)(struct agent_backend *b, uint32_t vector, int fds[2]);
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
