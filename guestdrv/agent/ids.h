/* SPDX-License-Identifier: MIT */
/*
 * Client ids and doorbell vectors the agent hands to its shim clients: ids
 * are unique among live clients in 1..65535 and handed out round-robin (a
 * released id comes back only after the others were tried); vectors go
 * round-robin over 1..vectors-1, to a free one first, shared when they run out.
 */
#ifndef AGENT_IDS_H
#define AGENT_IDS_H

#include <stdint.h>

#define AGENT_CLIENT_ID_MAX 65535U
#define AGENT_VECTORS_MAX   64U

struct agent_ids {
	uint64_t used[(AGENT_CLIENT_ID_MAX + 1) / 64]; /* bit i: id i taken (0 never) */
	uint32_t next_id;                              /* where the next search starts */
	uint32_t live;
	uint32_t vectors;                              /* device vectors, 1..64 */
	uint32_t vec_users[AGENT_VECTORS_MAX];
	uint32_t next_vec;
};

/* vectors: how many the device has (clamped to 1..AGENT_VECTORS_MAX). */
void agent_ids_init(struct agent_ids *ids, uint32_t vectors);

/* @return a free id in 1..65535, or -ENOSPC. */
int agent_id_alloc(struct agent_ids *ids);
/* Release id (ignored if not taken). */
void agent_id_free(struct agent_ids *ids, uint32_t id);

/* @return the vector for a new client: 0 if vectors == 1, else 1..vectors-1. */
uint32_t agent_vector_alloc(struct agent_ids *ids);
void agent_vector_free(struct agent_ids *ids, uint32_t vector);

#endif
