// SPDX-License-Identifier: MIT
/* Peer ID allocator (bitmap, next-fit) and per-peer eventfd sets. */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>

#include "peers.h"

void peer_ids_init(struct peer_ids *p)
{
	memset(p, 0, sizeof(*p));
}

bool peer_id_used(const struct peer_ids *p, uint32_t id)
{
	return id < PEER_ID_COUNT && (p->used[id / 64] >> (id % 64)) & 1;
}

int peer_id_reserve(struct peer_ids *p, uint32_t id)
{
	if (id >= PEER_ID_COUNT)
		return -EINVAL;
	if (peer_id_used(p, id))
		return -EEXIST;
	p->used[id / 64] |= 1ULL << (id % 64);
	p->count++;
	return 0;
}

int peer_id_alloc(struct peer_ids *p)
{
	uint32_t i;

	for (i = 0; i < PEER_ID_COUNT; i++) {
		uint32_t id = (p->next + i) % PEER_ID_COUNT;

		if (!peer_id_used(p, id)) {
			peer_id_reserve(p, id);
			p->next = (id + 1) % PEER_ID_COUNT;
			return (int)id;
		}
	}
	return -ENOSPC;
}

void peer_id_free(struct peer_ids *p, uint32_t id)
{
	if (!peer_id_used(p, id))
		return;
	p->used[id / 64] &= ~(1ULL << (id % 64));
	p->count--;
}

int peer_fds_open(struct peer_fds *f, uint32_t n)
{
	uint32_t i;

	f->n = 0;
	if (n == 0 || n > PEER_VECTORS_MAX)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

		if (fd < 0) {
			int e = -errno;

			peer_fds_close(f);
			return e;
		}
		f->fd[f->n++] = fd;
	}
	return 0;
}

void peer_fds_close(struct peer_fds *f)
{
	uint32_t i;

	for (i = 0; i < f->n; i++)
		close(f->fd[i]);
	f->n = 0;
}
