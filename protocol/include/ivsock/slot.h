/* SPDX-License-Identifier: MIT */
/*
 * Generation-checked slots for the shared tables. Each slot starts with one
 * 64-bit atomic word: generation, state, and owner (VM index, client id).
 * Every move is a single CAS on that word, so there is no lock a dying
 * process could leave held: a slot whose owner died stays claimed until the
 * owner's agent (or ivsockd, for a dead VM) releases it by owner.
 */
#ifndef IVSOCK_SLOT_H
#define IVSOCK_SLOT_H

#include <stdint.h>
#include <stdbool.h>

#include "ivsock/barrier.h"

/*
 * word layout: bits  0..31 generation (bumped on every claim)
 *              bits 32..39 state (0 = free; table-specific otherwise)
 *              bits 40..47 owner VM index
 *              bits 48..63 owner client id (assigned by the VM's agent)
 */
#define IVSOCK_SLOT_FREE 0U
#define IVSOCK_SLOT_INIT 1U /* claimed, fields being written: not yet valid */

struct ivsock_slot_val {
	uint32_t gen;
	uint8_t state;
	uint8_t vm;
	uint16_t client;
};

static inline uint64_t ivsock_slot_pack(struct ivsock_slot_val v)
{
	return (uint64_t)v.gen | (uint64_t)v.state << 32 |
	       (uint64_t)v.vm << 40 | (uint64_t)v.client << 48;
}

static inline struct ivsock_slot_val ivsock_slot_unpack(uint64_t w)
{
	struct ivsock_slot_val v = {
		.gen = (uint32_t)w,
		.state = (uint8_t)(w >> 32),
		.vm = (uint8_t)(w >> 40),
		.client = (uint16_t)(w >> 48),
	};
	return v;
}

/* Tests may count slot reads (work done by a cleanup path) by defining this
 * before including the sources; it is empty in every build of the library. */
#ifndef IVSOCK_SLOT_READ_HOOK
#define IVSOCK_SLOT_READ_HOOK() do { } while (0)
#endif

static inline struct ivsock_slot_val ivsock_slot_get(ivsock_a64 *w)
{
	IVSOCK_SLOT_READ_HOOK();
	/* Pairs with the release half of the CAS that published the state. */
	return ivsock_slot_unpack(ivsock_load_acquire(w));
}

/*
 * Claim a free slot: FREE -> INIT with gen+1 and the given owner.
 * @return the new generation (never 0), or 0 if the slot was not free.
 */
uint32_t ivsock_slot_claim(ivsock_a64 *w, uint8_t vm, uint16_t client);

/*
 * Move (gen, from) -> (gen, to), keeping the owner.
 * @return 0, or -ESTALE if gen or state no longer match.
 */
int ivsock_slot_move(ivsock_a64 *w, uint32_t gen, uint8_t from, uint8_t to);

/*
 * Free a slot of generation gen in any non-free state.
 * @return 0, or -ESTALE if the generation moved on (already freed).
 */
int ivsock_slot_release(ivsock_a64 *w, uint32_t gen);

/* Is the slot owned by (vm, client) and not free? */
static inline bool ivsock_slot_owned_by(struct ivsock_slot_val v, uint8_t vm,
					uint16_t client)
{
	return v.state != IVSOCK_SLOT_FREE && v.vm == vm && v.client == client;
}

#endif
