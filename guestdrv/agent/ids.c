// SPDX-License-Identifier: MIT
/* Client id and vector allocation for ivsock-agent (see ids.h). */
#include <errno.h>
#include <string.h>

#include "ids.h"

void agent_ids_init(struct agent_ids *ids, uint32_t vectors)
{
	memset(ids, 0, sizeof(*ids));
	if (vectors < 1)
		vectors = 1;
	if (vectors > AGENT_VECTORS_MAX)
		vectors = AGENT_VECTORS_MAX;
	ids->vectors = vectors;
	ids->next_id = 1;
	ids->next_vec = 1;
}

static int id_taken(const struct agent_ids *ids, uint32_t id)
{
	return (ids->used[id / 64] >> (id % 64)) & 1;
}

int agent_id_alloc(struct agent_ids *ids)
{
	uint32_t i, id;

	if (ids->live >= AGENT_CLIENT_ID_MAX)
		return -ENOSPC;
	for (i = 0; i < AGENT_CLIENT_ID_MAX; i++) {
		id = (ids->next_id - 1 + i) % AGENT_CLIENT_ID_MAX + 1;
		if (!id_taken(ids, id)) {
			ids->used[id / 64] |= 1ULL << (id % 64);
			ids->live++;
			ids->next_id = id % AGENT_CLIENT_ID_MAX + 1;
			return (int)id;
		}
	}
	return -ENOSPC;
}

void agent_id_free(struct agent_ids *ids, uint32_t id)
{
	if (id == 0 || id > AGENT_CLIENT_ID_MAX || !id_taken(ids, id))
		return;
	ids->used[id / 64] &= ~(1ULL << (id % 64));
	ids->live--;
}

uint32_t agent_vector_alloc(struct agent_ids *ids)
{
	uint32_t n = ids->vectors - 1, i, v, best = 0;

	if (n == 0) {
		ids->vec_users[0]++;
		return 0;
	}
	/* Round-robin from next_vec; the first unused one wins, else the least
	 * used (the earliest such in round-robin order). */
	for (i = 0; i < n; i++) {
		v = (ids->next_vec - 1 + i) % n + 1;
		if (best == 0 || ids->vec_users[v] < ids->vec_users[best])
			best = v;
		if (ids->vec_users[v] == 0)
			break;
	}
	ids->vec_users[best]++;
	ids->next_vec = best % n + 1;
	return best;
}

void agent_vector_free(struct agent_ids *ids, uint32_t vector)
{
	if (vector < ids->vectors && ids->vec_users[vector] > 0)
		ids->vec_users[vector]--;
}
