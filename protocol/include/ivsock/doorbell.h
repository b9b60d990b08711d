/* SPDX-License-Identifier: MIT */
/*
 * Doorbells: "notify (peer, vector)" and "the fd to wait on". Backends:
 * eventfd (fds handed out by an ivshmem server; missing ones fetched lazily
 * through a resolver callback) and the guest driver (/dev/ivsockN ioctl or
 * a mapped doorbell register).
 */
#ifndef IVSOCK_DOORBELL_H
#define IVSOCK_DOORBELL_H

#include <stdbool.h>
#include <stddef.h>
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

/* wait_fd becomes owned by the doorbell. resolve may be NULL. Unbounded,
 * nothing forgotten unless told (ivsock_evdb_forget_peer): the agent's
 * table of every peer's eventfds. */
struct ivsock_doorbell *ivsock_evdb_new(int wait_fd, ivsock_evdb_resolve_fn resolve,
					void *arg);

/*
 * A lazy, bounded cache of peers' eventfds (the shim's): an fd is fetched
 * with resolve() on first use, kept with the peer's identity tag, checked
 * with same() at every use (forgotten and fetched again once the peer is no
 * longer the same: its ID was reused, it died), evicted least recently used
 * beyond cap (its fd closed), forgotten when signalling it fails, and a
 * failed lookup is remembered neg_ms before resolve() is asked again.
 */
struct ivsock_evdb_lazy {
	/* A new fd for (peer, vector), or -errno. *tag (also set on failure):
	 * who the peer is now; 0 if unknown: then the fd is fetched again
	 * after 1 s (when same is set). */
	int (*resolve)(void *arg, uint32_t peer, uint32_t vector, uint64_t *tag);
	/* Is peer still the one that had tag (tag != 0)? On every notify:
	 * keep it to a load or two. NULL: always. */
	bool (*same)(void *arg, uint32_t peer, uint64_t tag);
	void *arg;
	uint32_t cap;     /* entries, failed lookups included; 0: 64 */
	uint32_t neg_ms;  /* 0: failed lookups are not remembered */
};
struct ivsock_doorbell *ivsock_evdb_new_lazy(int wait_fd, const struct ivsock_evdb_lazy *p);

struct ivsock_evdb_stats {
	size_t entries;      /* cached (peer, vector) pairs, failures included */
	uint64_t resolves;   /* resolve() calls */
	uint64_t evicted;    /* LRU evictions */
	uint64_t stale;      /* forgotten because same() said no */
	uint64_t neg_hits;   /* notifies answered from a remembered failure */
};
void ivsock_evdb_get_stats(struct ivsock_doorbell *db, struct ivsock_evdb_stats *st);
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

/* A doorbell that only waits (wait_fd, owned): notify fails with
 * -EOPNOTSUPP. A process of a real guest holds no device fd; it rings the
 * other end of a channel through that channel's window. */
struct ivsock_doorbell *ivsock_waitdb_new(int wait_fd);
/* Ring the peer a window may ring, on vector. @return 0 or -errno
 * (-EPERM: the window rings nobody, -ENODEV: revoked or unplugged). */
int ivsock_window_ring(int window_fd, uint32_t vector);

#endif
