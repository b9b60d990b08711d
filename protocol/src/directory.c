// SPDX-License-Identifier: MIT
/* VM directory: written by ivsockd, read by everyone through validated
 * snapshots; the address list is guarded by a seqlock. */
#include <errno.h>
#include <string.h>

#include "ivsock/directory.h"

static void copy_name(char *dst, const char *src)
{
	char tmp[IVSOCK_NAME_MAX];
	size_t n = src ? strnlen(src, IVSOCK_NAME_MAX - 1) : 0;

	memset(tmp, 0, sizeof(tmp));
	memcpy(tmp, src ? src : "", n);
	ivsock_copy_to_shared(dst, tmp, sizeof(tmp));
}

static const uint8_t zero_addrs[IVSOCK_VM_MAX_ADDRS * sizeof(struct ivsock_addr)];

int ivsock_dir_add(struct ivsock_region *rg, uint32_t peer_id, uint32_t vectors,
		   const char *name, const uint8_t uuid[16])
{
	uint32_t i, gen;

	if (peer_id > 65535)
		return -EINVAL;
	for (i = 0; i < rg->vm_cap; i++) {
		struct ivsock_vm_entry *e = &rg->vms[i];

		gen = ivsock_slot_claim(&e->slot, (uint8_t)i, 0);
		if (!gen)
			continue;
		ivsock_st32(&e->peer_id, peer_id);
		ivsock_st32(&e->vectors, vectors);
		copy_name(e->name, name);
		ivsock_copy_to_shared(e->uuid, uuid ? uuid : zero_addrs, 16);
		ivsock_st32(&e->naddrs, 0);
		ivsock_copy_to_shared(e->addrs, zero_addrs, sizeof(e->addrs));
		ivsock_store_relaxed(&e->rx_bytes, 0);
		ivsock_store_relaxed(&e->tx_bytes, 0);
		if (ivsock_slot_move(&e->slot, gen, IVSOCK_SLOT_INIT, IVSOCK_VM_ALIVE) < 0) {
			ivsock_slot_release(&e->slot, gen);
			return -EAGAIN;
		}
		return (int)i;
	}
	return -ENOSPC;
}

int ivsock_dir_set_addrs(struct ivsock_region *rg, uint32_t vm,
			 const struct ivsock_addr *addrs, uint32_t n)
{
	struct ivsock_vm_entry *e;
	uint32_t seq;

	if (vm >= rg->vm_cap || n > IVSOCK_VM_MAX_ADDRS)
		return -EINVAL;
	e = &rg->vms[vm];
	seq = ivsock_load_relaxed(&e->addr_seq);
	ivsock_store_relaxed(&e->addr_seq, seq | 1);
	/* Pairs with the fence in ivsock_dir_read(): odd seq is seen before
	 * any half-written address. */
	atomic_thread_fence(memory_order_release);
	ivsock_copy_to_shared(e->addrs, zero_addrs, sizeof(e->addrs));
	if (n)
		ivsock_copy_to_shared(e->addrs, addrs, n * sizeof(*addrs));
	ivsock_st32(&e->naddrs, n);
	ivsock_store_release(&e->addr_seq, (seq | 1) + 1);
	return 0;
}

int ivsock_dir_set_name(struct ivsock_region *rg, uint32_t vm, const char *name,
			const uint8_t uuid[16])
{
	struct ivsock_vm_entry *e;
	uint32_t seq;

	if (vm >= rg->vm_cap)
		return -EINVAL;
	e = &rg->vms[vm];
	seq = ivsock_load_relaxed(&e->addr_seq);
	ivsock_store_relaxed(&e->addr_seq, seq | 1);
	atomic_thread_fence(memory_order_release);
	copy_name(e->name, name);
	if (uuid)
		ivsock_copy_to_shared(e->uuid, uuid, 16);
	ivsock_store_release(&e->addr_seq, (seq | 1) + 1);
	return 0;
}

int ivsock_dir_mark_dead(struct ivsock_region *rg, uint32_t vm)
{
	struct ivsock_slot_val v;

	if (vm >= rg->vm_cap)
		return -EINVAL;
	v = ivsock_slot_get(&rg->vms[vm].slot);
	return ivsock_slot_move(&rg->vms[vm].slot, v.gen, IVSOCK_VM_ALIVE, IVSOCK_VM_DEAD);
}

int ivsock_dir_remove(struct ivsock_region *rg, uint32_t vm)
{
	struct ivsock_slot_val v;

	if (vm >= rg->vm_cap)
		return -EINVAL;
	v = ivsock_slot_get(&rg->vms[vm].slot);
	return ivsock_slot_release(&rg->vms[vm].slot, v.gen);
}

int ivsock_dir_read(const struct ivsock_region *rg, uint32_t vm,
		    struct ivsock_vm_info *out)
{
	const struct ivsock_vm_entry *e;
	int tries;

	if (vm >= rg->vm_cap)
		return -EINVAL;
	e = &rg->vms[vm];
	for (tries = 0; tries < 64; tries++) {
		struct ivsock_slot_val v = ivsock_slot_get((ivsock_a64 *)&e->slot);
		uint32_t s1, s2, n;

		if (v.state != IVSOCK_VM_ALIVE && v.state != IVSOCK_VM_DEAD)
			return -ENOENT;
		s1 = ivsock_load_acquire((ivsock_a32 *)&e->addr_seq);
		if (s1 & 1) {
			ivsock_cpu_relax();
			continue;
		}
		memset(out, 0, sizeof(*out));
		out->index = vm;
		out->gen = v.gen;
		out->state = v.state;
		out->peer_id = ivsock_ld32(&e->peer_id);
		out->vectors = ivsock_ld32(&e->vectors);
		ivsock_copy_from_shared(out->name, e->name, IVSOCK_NAME_MAX);
		out->name[IVSOCK_NAME_MAX - 1] = '\0';
		ivsock_copy_from_shared(out->uuid, e->uuid, 16);
		n = ivsock_ld32(&e->naddrs);
		if (n > IVSOCK_VM_MAX_ADDRS)
			n = IVSOCK_VM_MAX_ADDRS;
		out->naddrs = n;
		ivsock_copy_from_shared(out->addrs, e->addrs, n * sizeof(out->addrs[0]));
		/* Pairs with the release stores of addr_seq in the writer. */
		atomic_thread_fence(memory_order_acquire);
		s2 = ivsock_load_relaxed((ivsock_a32 *)&e->addr_seq);
		if (s1 != s2)
			continue;
		if (ivsock_slot_get((ivsock_a64 *)&e->slot).gen != v.gen)
			continue;
		if (out->peer_id > 65535)
			return -EPROTO;
		return 0;
	}
	return -EAGAIN;
}

int ivsock_dir_find_peer(const struct ivsock_region *rg, uint32_t peer_id)
{
	uint32_t i;

	for (i = 0; i < rg->vm_cap; i++) {
		const struct ivsock_vm_entry *e = &rg->vms[i];

		if (ivsock_slot_get((ivsock_a64 *)&e->slot).state == IVSOCK_VM_ALIVE &&
		    ivsock_ld32(&e->peer_id) == peer_id)
			return (int)i;
	}
	return -ENOENT;
}

int ivsock_dir_find_addr(const struct ivsock_region *rg, const struct ivsock_addr *a)
{
	struct ivsock_vm_info info;
	uint32_t i, j;

	for (i = 0; i < rg->vm_cap; i++) {
		if (ivsock_slot_get(&rg->vms[i].slot).state != IVSOCK_VM_ALIVE)
			continue;
		if (ivsock_dir_read(rg, i, &info) < 0 || info.state != IVSOCK_VM_ALIVE)
			continue;
		for (j = 0; j < info.naddrs; j++)
			if (ivsock_addr_equal(&info.addrs[j], a))
				return (int)i;
	}
	return -ENOENT;
}

bool ivsock_dir_alive(const struct ivsock_region *rg, uint32_t vm, uint32_t gen)
{
	struct ivsock_slot_val v;

	if (vm >= rg->vm_cap)
		return false;
	v = ivsock_slot_get(&rg->vms[vm].slot);
	return v.state == IVSOCK_VM_ALIVE && (gen == 0 || v.gen == gen);
}
