// SPDX-License-Identifier: MIT
/* Doorbell backends: eventfds from an ivshmem server, and the guest driver. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
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

struct evdb_entry {
	uint32_t peer, vector;
	int fd;
};

struct evdb {
	struct ivsock_doorbell db;
	ivsock_evdb_resolve_fn resolve;
	void *arg;
	struct evdb_entry *v;
	size_t n, cap;
	size_t last; /* index of the last hit: most traffic has one peer */
};

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

int ivsock_evdb_set(struct ivsock_doorbell *db, uint32_t peer, uint32_t vector, int fd)
{
	struct evdb *e = (struct evdb *)db;
	struct evdb_entry *x = evdb_find(e, peer, vector);

	if (fd < 0)
		return -EBADF;
	if (x) {
		if (x->fd != fd)
			close(x->fd);
		x->fd = fd;
		return 0;
	}
	if (e->n == e->cap) {
		size_t cap = e->cap ? e->cap * 2 : 16;
		struct evdb_entry *nv = realloc(e->v, cap * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		e->v = nv;
		e->cap = cap;
	}
	e->v[e->n].peer = peer;
	e->v[e->n].vector = vector;
	e->v[e->n].fd = fd;
	e->n++;
	return 0;
}

int ivsock_evdb_get(struct ivsock_doorbell *db, uint32_t peer, uint32_t vector)
{
	struct evdb_entry *x = evdb_find((struct evdb *)db, peer, vector);

	return x ? x->fd : -ENOENT;
}

void ivsock_evdb_forget_peer(struct ivsock_doorbell *db, uint32_t peer)
{
	struct evdb *e = (struct evdb *)db;
	size_t i = 0;

	while (i < e->n) {
		if (e->v[i].peer == peer) {
			close(e->v[i].fd);
			e->v[i] = e->v[--e->n];
		} else {
			i++;
		}
	}
	e->last = 0;
}

static int evdb_notify(struct ivsock_doorbell *db, uint32_t peer, uint32_t vector)
{
	struct evdb *e = (struct evdb *)db;
	struct evdb_entry *x = evdb_find(e, peer, vector);
	int fd, rc;

	if (!x) {
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
