/* SPDX-License-Identifier: MIT */
/* ivshmem peer IDs (0..65535, next-fit so a freed ID is not handed out again
 * at once) and the eventfd set of one peer. */
#ifndef IVSOCKD_PEERS_H
#define IVSOCKD_PEERS_H

#include <stdbool.h>
#include <stdint.h>

#define PEER_ID_COUNT 65536
#define PEER_VECTORS_MAX 64

struct peer_ids {
	uint64_t used[PEER_ID_COUNT / 64];
	uint32_t next;            /* where the next search starts */
	uint32_t count;
};

void peer_ids_init(struct peer_ids *p);
/* @return a free ID (now used) or -ENOSPC. */
int peer_id_alloc(struct peer_ids *p);
/* Mark a specific ID used (adoption). @return 0 or -EEXIST. */
int peer_id_reserve(struct peer_ids *p, uint32_t id);
void peer_id_free(struct peer_ids *p, uint32_t id);
bool peer_id_used(const struct peer_ids *p, uint32_t id);

struct peer_fds {
	uint32_t n;
	int fd[PEER_VECTORS_MAX];
};

/* n eventfds, EFD_CLOEXEC | EFD_NONBLOCK. @return 0 or -errno (none kept). */
int peer_fds_open(struct peer_fds *f, uint32_t n);
void peer_fds_close(struct peer_fds *f);

#endif
