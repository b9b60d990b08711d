// SPDX-License-Identifier: MIT
/* Doorbell backends: eventfds from an ivshmem server, and the guest driver. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>

#include "ivsock/barrier.h"
#include "ivsock/doorbell.h"
#include "ivsock/ivsock_dev.h"

void ivsock_doorbell_free(struct ivsock_doorbell *db)
{
	if (db)
		db->ops->free(db);
}

long ivsock_eventfd_drain(int fd)
{
	uint64_t v;
	ssize_t n;

	do
		n = read(fd, &v, sizeof(v));
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EAGAIN ? 0 : -errno;
	if (n != sizeof(v))
		return -EIO;
	return (long)v;
}

int ivsock_eventfd_signal(int fd)
{
	uint64_t one = 1;
	ssize_t n;

	do
		n = write(fd, &one, sizeof(one));
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EAGAIN ? 0 : -errno; /* counter saturated: already pending */
	return n == sizeof(one) ? 0 : -EIO;
}

/* ---------------- eventfd backend ---------------- */

#define UNTAGGED_NS 1000000000ULL /* lazy entry without identity: kept 1 s */

struct evdb_entry {
	uint32_t peer, vector;
	int fd;            /* -1: a remembered failure (err, until) */
	int err;
	uint64_t tag;      /* lazy: who the peer was at resolve time */
	uint64_t until_ns; /* failure, or no tag: ask again after */
	uint64_t used;     /* LRU tick */
};

struct evdb {
	struct ivsock_doorbell db;
	ivsock_evdb_resolve_fn resolve;   /* plain resolver (ivsock_evdb_new) */
	struct ivsock_evdb_lazy lazy;     /* lazy.resolve set: bounded cache */
	void *arg;
	struct evdb_entry *v;
	size_t n, cap;
	size_t last; /* index of the last hit: most traffic has one peer */
	uint64_t tick;
	struct ivsock_evdb_stats st;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static struct evdb_entry *evdb_find(struct evdb *e, uint32_t peer, uint32_t vector)
{
	size_t i;

	if (e->last < e->n && e->v[e->last].peer == peer && e->v[e->last].vector == vector)
		return &e->v[e->last];
	for (i = 0; i < e->n; i++) {
		if (e->v[i].peer == peer && e->v[i].vector == vector) {
			e->last = i;
			return &e->v[i];
		}
	}
	return NULL;
}

static void evdb_drop(struct evdb *e, size_t i, bool close_fd)
{
	if (close_fd && e->v[i].fd >= 0)
		close(e->v[i].fd);
	e->v[i] = e->v[--e->n];
	e->last = 0;
}

/* A free entry for (peer, vector), evicting the least recently used one
 * when the lazy cache is full. NULL: out of memory. */
static struct evdb_entry *evdb_slot(struct evdb *e, uint32_t peer, uint32_t vector)
{
	struct evdb_entry *x;

	if (e->lazy.resolve && e->n >= e->lazy.cap && e->n > 0) {
		size_t lru = 0;

		for (size_t i = 1; i < e->n; i++)
			if (e->v[i].used < e->v[lru].used)
				lru = i;
		evdb_drop(e, lru, true);
		e->st.evicted++;
	}
	if (e->n == e->cap) {
		size_t cap = e->cap ? e->cap * 2 : 16;
		struct evdb_entry *nv = realloc(e->v, cap * sizeof(*nv));

		if (!nv)
			return NULL;
		e->v = nv;
		e->cap = cap;
	}
	x = &e->v[e->n++];
	*x = (struct evdb_entry){ .peer = peer, .vector = vector, .fd = -1 };
	return x;
}

int ivsock_evdb_set(struct ivsock_doorbell *db, uint32_t peer, uint32_t vector, int fd)
{
	struct evdb *e = (struct evdb *)db;
	struct evdb_entry *x = evdb_find(e, peer, vector);

	if (fd < 0)
		return -EBADF;
	if (x) {
		if (x->fd >= 0 && x->fd != fd)
			close(x->fd);
	} else {
		x = evdb_slot(e, peer, vector);
		if (!x)
			return -ENOMEM;
	}
	x->fd = fd;
	x->err = 0;
	x->tag = 0;
	x->used = ++e->tick;
	return 0;
}

int ivsock_evdb_get(struct ivsock_doorbell *db, uint32_t peer, uint32_t vector)
{
	struct evdb_entry *x = evdb_find((struct evdb *)db, peer, vector);

	return x && x->fd >= 0 ? x->fd : -ENOENT;
}

void ivsock_evdb_forget_peer(struct ivsock_doorbell *db, uint32_t peer)
{
	struct evdb *e = (struct evdb *)db;
	size_t i = 0;

	while (i < e->n) {
		if (e->v[i].peer == peer)
			evdb_drop(e, i, true);
		else
			i++;
	}
	e->last = 0;
}

void ivsock_evdb_get_stats(struct ivsock_doorbell *db, struct ivsock_evdb_stats *st)
{
	struct evdb *e = (struct evdb *)db;

	*st = e->st;
	st->entries = e->n;
}

/* Lazy cache: the entry for (peer, vector), resolved or re-resolved as
 * needed; NULL with *rc set when there is no fd to signal. */
static struct evdb_entry *lazy_lookup(struct evdb *e, uint32_t peer, uint32_t vector, int *rc)
{
	struct evdb_entry *x = evdb_find(e, peer, vector);
	uint64_t tag = 0;
	int fd;

	if (x && x->fd >= 0) {
		if (!e->lazy.same)
			return x;
		if (x->tag ? e->lazy.same(e->arg, peer, x->tag) : mono_ns() < x->until_ns)
			return x;
		/* The peer ID now names someone else (or nobody): its old
		 * eventfd would wake no one. */
		e->st.stale++;
		evdb_drop(e, (size_t)(x - e->v), true);
		x = NULL;
	} else if (x) {
		if (mono_ns() < x->until_ns) {
			e->st.neg_hits++;
			x->used = ++e->tick;
			*rc = x->err;
			return NULL;
		}
		evdb_drop(e, (size_t)(x - e->v), false);
		x = NULL;
	}
	e->st.resolves++;
	fd = e->lazy.resolve(e->arg, peer, vector, &tag);
	if (fd < 0 && !e->lazy.neg_ms) {
		*rc = fd;
		return NULL;
	}
	x = evdb_slot(e, peer, vector);
	if (!x) {
		if (fd >= 0)
			close(fd);
		*rc = fd < 0 ? fd : -ENOMEM;
		return NULL;
	}
	x->fd = fd >= 0 ? fd : -1;
	x->err = fd < 0 ? fd : 0;
	x->tag = tag;
	x->used = ++e->tick;
	if (fd < 0) {
		x->until_ns = mono_ns() + (uint64_t)e->lazy.neg_ms * 1000000ULL;
		*rc = fd;
		return NULL;
	}
	/* Fetched while the peer was not (yet) known: no identity to check,
	 * so it is fetched again after a while. */
	if (!tag)
		x->until_ns = mono_ns() + UNTAGGED_NS;
	e->last = (size_t)(x - e->v);
	return x;
}

static int evdb_notify(struct ivsock_doorbell *db, uint32_t peer, uint32_t vector)
{
	struct evdb *e = (struct evdb *)db;
	struct evdb_entry *x;
	int fd, rc = 0;

	if (e->lazy.resolve) {
		x = lazy_lookup(e, peer, vector, &rc);
		if (!x)
			return rc;
		x->used = ++e->tick;
		rc = ivsock_eventfd_signal(x->fd);
		if (rc < 0) {
			/* Not an eventfd of ours any more (closed or replaced
			 * under us): forget it, never close a number that may
			 * now belong to someone else. */
			evdb_drop(e, (size_t)(x - e->v), false);
		}
		return rc;
	}
	x = evdb_find(e, peer, vector);
	if (!x || x->fd < 0) {
		if (!e->resolve)
			return -ENOENT;
		fd = e->resolve(e->arg, peer, vector);
		if (fd < 0)
			return fd;
		rc = ivsock_evdb_set(db, peer, vector, fd);
		if (rc < 0) {
			close(fd);
			return rc;
		}
		x = evdb_find(e, peer, vector);
	}
	return ivsock_eventfd_signal(x->fd);
}

static void evdb_free(struct ivsock_doorbell *db)
{
	struct evdb *e = (struct evdb *)db;
	size_t i;

	for (i = 0; i < e->n; i++)
		if (e->v[i].fd >= 0)
			close(e->v[i].fd);
	free(e->v);
	if (db->wait_fd >= 0)
		close(db->wait_fd);
	free(e);
}

static const struct ivsock_doorbell_ops evdb_ops = {
	.notify = evdb_notify,
	.free = evdb_free,
};

struct ivsock_doorbell *ivsock_evdb_new(int wait_fd, ivsock_evdb_resolve_fn resolve,
					void *arg)
{
	struct evdb *e = calloc(1, sizeof(*e));

	if (!e)
		return NULL;
	e->db.ops = &evdb_ops;
	e->db.wait_fd = wait_fd;
	e->resolve = resolve;
	e->arg = arg;
	return &e->db;
}

struct ivsock_doorbell *ivsock_evdb_new_lazy(int wait_fd, const struct ivsock_evdb_lazy *p)
{
	struct evdb *e;

	if (!p || !p->resolve)
		return NULL;
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->db.ops = &evdb_ops;
	e->db.wait_fd = wait_fd;
	e->lazy = *p;
	if (!e->lazy.cap)
		e->lazy.cap = 64;
	e->arg = p->arg;
	return &e->db;
}

/* ---------------- guest driver backend ---------------- */

struct devdb {
	struct ivsock_doorbell db;
	int dev_fd;
	_Atomic uint32_t *doorbell_reg; /* NULL: use the ioctl */
};

static int devdb_notify(struct ivsock_doorbell *db, uint32_t peer, uint32_t vector)
{
	struct devdb *d = (struct devdb *)db;
	struct ivsock_dev_ring r = { .peer = (uint16_t)peer, .vector = (uint16_t)vector };

	if (peer > 65535 || vector > 65535)
		return -EINVAL;
	if (d->doorbell_reg) {
		/* One MMIO store; the device latches (peer << 16 | vector). */
		atomic_store_explicit(d->doorbell_reg, peer << 16 | vector,
				      memory_order_seq_cst);
		return 0;
	}
	return ioctl(d->dev_fd, IVSOCK_IOC_RING, &r) < 0 ? -errno : 0;
}

static void devdb_free(struct ivsock_doorbell *db)
{
	struct devdb *d = (struct devdb *)db;

	if (d->dev_fd >= 0)
		close(d->dev_fd);
	if (db->wait_fd >= 0)
		close(db->wait_fd);
	free(d);
}

static const struct ivsock_doorbell_ops devdb_ops = {
	.notify = devdb_notify,
	.free = devdb_free,
};

struct ivsock_doorbell *ivsock_devdb_new(int dev_fd, int wait_fd, void *regs)
{
	struct devdb *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->db.ops = &devdb_ops;
	d->db.wait_fd = wait_fd;
	d->dev_fd = dev_fd;
	if (regs)
		d->doorbell_reg = (_Atomic uint32_t *)((uint8_t *)regs + IVSOCK_DEV_REG_DOORBELL);
	return &d->db;
}

/* ---- wait-only doorbell: a process of a real guest waits on its eventfd
 * and rings through each channel's window (IVSOCK_IOC_WIN_RING) ---- */

static int waitdb_notify(struct ivsock_doorbell *db, uint32_t peer, uint32_t vector)
{
	(void)db, (void)peer, (void)vector;
	return -EOPNOTSUPP;
}

static void waitdb_free(struct ivsock_doorbell *db)
{
	if (db->wait_fd >= 0)
		close(db->wait_fd);
	free(db);
}

static const struct ivsock_doorbell_ops waitdb_ops = {
	.notify = waitdb_notify,
	.free = waitdb_free,
};

struct ivsock_doorbell *ivsock_waitdb_new(int wait_fd)
{
	struct ivsock_doorbell *db = calloc(1, sizeof(*db));

	if (!db)
		return NULL;
	db->ops = &waitdb_ops;
	db->wait_fd = wait_fd;
	return db;
}

int ivsock_window_ring(int window_fd, uint32_t vector)
{
	uint32_t v = vector;

	return ioctl(window_fd, IVSOCK_IOC_WIN_RING, &v) < 0 ? -errno : 0;
}
