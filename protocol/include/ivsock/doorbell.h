/* SPDX-License-Identifier: MIT */
/*
 * Doorbells: "notify (peer, vector)" and "the fd to wait on". Backends:
 * eventfd (fds handed out by an ivshmem server; missing ones fetched lazily
 * through a resolver callback) and the guest driver (/dev/ivsockN ioctl or
 * a mapped doorbell register).
 */
#ifndef IVSOCK_DOORBELL_H
#define IVSOCK_DOORBELL_H

#include <stdint.h>

struct ivsock_doorbell;

struct ivsock_doorbell_ops {
	int (*notify)(struct ivsock_doorbell *db, uint32_t peer, uint32_t vector);
	void (*free)(struct ivsock_doorbell *db);
};

struct ivsock_doorbell {
	const struct ivsock_doorbell_ops *ops;
	int wait_fd;        /* eventfd signalled when our vector fires; owned */
};

/* Ring (peer, vector). @return 0 or -errno (-ENOENT: no way to reach it). */
static inline int ivsock_doorbell_notify(struct ivsock_doorbell *db, uint32_t peer,
					 uint32_t vector)
{
	return db->ops->notify(db, peer, vector);
}

static inline int ivsock_doorbell_wait_fd(const struct ivsock_doorbell *db)
{
	return db->wait_fd;
}

/* Free a doorbell of any backend (closes its fds). NULL is fine. */
void ivsock_doorbell_free(struct ivsock_doorbell *db);

/* Consume pending wake-ups on an eventfd (non-blocking fd or not).
 * @return count read, 0 if none, -errno. */
long ivsock_eventfd_drain(int fd);
/* Signal an eventfd once. @return 0 or -errno. */
int ivsock_eventfd_signal(int fd);

/* ---- eventfd backend ---- */

/* Fetch the eventfd of (peer, vector); return a new fd (ownership passes
 * to the doorbell) or -errno. */
typedef int (*ivsock_evdb_resolve_fn)(void *arg, uint32_t peer, uint32_t vector);

/* wait_fd becomes owned by the doorbell. resolve may be NULL. */
struct ivsock_doorbell *ivsock_evdb_new(int wait_fd, ivsock_evdb_resolve_fn resolve,
					void *arg);
/* Install the fd of (peer, vector) (owned from now on; replaces). */
int ivsock_evdb_set(struct ivsock_doorbell *db, uint32_t peer, uint32_t vector, int fd);
/* Forget (and close) every fd of a peer that went away. */
void ivsock_evdb_forget_peer(struct ivsock_doorbell *db, uint32_t peer);
/* The fd for (peer, vector) if known, else -ENOENT (no resolve). */
int ivsock_evdb_get(struct ivsock_doorbell *db, uint32_t peer, uint32_t vector);

/* ---- guest driver backend (/dev/ivsockN) ---- */

/*
 * dev_fd: an open /dev/ivsockN (owned); wait_fd: an eventfd already bound to
 * our vector (owned). If regs is non-NULL (the mapped doorbell page), ringing
 * is a single store, else an IVSOCK_IOC_RING ioctl.
 */
struct ivsock_doorbell *ivsock_devdb_new(int dev_fd, int wait_fd, void *regs);

#endif
