// SPDX-License-Identifier: MIT
/* Backend-independent steps: attach the mapped region, find our directory
 * entry, ring through the backend's doorbell. */
#include <errno.h>
#include <time.h>

#include "ivsock/directory.h"
#include "backend.h"
#include "log.h"
#include "util.h"

int agent_backend_attach(struct agent_backend *b, int timeout_ms)
{
	uint64_t end = agent_now_ms() + (uint64_t)timeout_ms;
	struct ivsock_vm_info vi;
	int rc;

	rc = ivsock_region_attach(&b->rg, b->base, b->size);
	if (rc < 0) {
		log_err("region of %zu bytes is not usable: %s", b->size,
			ivsock_region_strerror(rc));
		return rc;
	}
	/* ivsockd adds our entry before it greets us, but a re-formatting or
	 * slow daemon may lag: retry briefly. */
	for (;;) {
		rc = ivsock_dir_find_peer(&b->rg, b->peer_id);
		if (rc >= 0 && ivsock_dir_read(&b->rg, (uint32_t)rc, &vi) == 0 &&
		    vi.peer_id == b->peer_id)
			break;
		if (agent_now_ms() >= end) {
			log_err("no directory entry for our peer ID %u in the region "
				"(is ivsockd serving this region?)", b->peer_id);
			return -ENOENT;
		}
		nanosleep(&(struct timespec){ .tv_nsec = 20 * 1000000 }, NULL);
	}
	b->vm_index = vi.index;
	b->vm_gen = vi.gen;
	log_info("attached: peer %u, directory entry %u (gen %u, name '%s'), "
		 "region %zu MiB, format %016llx", b->peer_id, vi.index, vi.gen, vi.name,
		 b->size >> 20, (unsigned long long)b->rg.format_id);
	return 0;
}

void agent_backend_ring(void *backend, uint32_t peer, uint32_t vector)
{
	struct agent_backend *b = backend;
	int rc = ivsock_doorbell_notify(b->db, peer, vector);

	if (rc < 0)
		log_debug("ring (%u, %u): %d", peer, vector, rc);
}
