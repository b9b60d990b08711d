// SPDX-License-Identifier: MIT
/* Lock-free claim/move/release of generation-checked shared slots. */
#include <errno.h>

#include "ivsock/slot.h"

uint32_t ivsock_slot_claim(ivsock_a64 *w, uint8_t vm, uint16_t client)
{
	uint64_t old = ivsock_load_acquire(w);
	struct ivsock_slot_val v = ivsock_slot_unpack(old);

	if (v.state != IVSOCK_SLOT_FREE)
		return 0;
	v.gen = v.gen + 1 ? v.gen + 1 : 1; /* generation 0 is never valid */
	v.state = IVSOCK_SLOT_INIT;
	v.vm = vm;
	v.client = client;
	if (!ivsock_cas(w, &old, ivsock_slot_pack(v)))
		return 0;
	return v.gen;
}

int ivsock_slot_move(ivsock_a64 *w, uint32_t gen, uint8_t from, uint8_t to)
{
	uint64_t old = ivsock_load_acquire(w);
	struct ivsock_slot_val v = ivsock_slot_unpack(old);

	if (v.gen != gen || v.state != from)
		return -ESTALE;
	v.state = to;
	/* Release: fields written while in `from` are visible with `to`. */
	return ivsock_cas(w, &old, ivsock_slot_pack(v)) ? 0 : -ESTALE;
}

int ivsock_slot_release(ivsock_a64 *w, uint32_t gen)
{
	uint64_t old = ivsock_load_acquire(w);
	struct ivsock_slot_val v;

	for (;;) {
		v = ivsock_slot_unpack(old);
		if (v.gen != gen || v.state == IVSOCK_SLOT_FREE)
			return -ESTALE;
		v.state = IVSOCK_SLOT_FREE;
		v.vm = 0;
		v.client = 0;
		if (ivsock_cas(w, &old, ivsock_slot_pack(v)))
			return 0;
	}
}
