// SPDX-License-Identifier: MIT
/* Listener registry: claim/publish, lookup by (VM, address, port), cleanup. */
#include <errno.h>
#include <string.h>

#include "ivsock/listener.h"

int ivsock_listener_add(struct ivsock_region *rg, uint8_t vm, uint16_t client,
			const struct ivsock_addr *addr, uint16_t port,
			unsigned int flags, uint32_t *gen)
{
	uint32_t i, g;

	if (vm >= rg->vm_cap || (addr->family != IVSOCK_AF_INET &&
				 addr->family != IVSOCK_AF_INET6))
		return -EINVAL;
	for (i = 0; i < rg->listener_cap; i++) {
		struct ivsock_listener *l = &rg->listeners[i];

		g = ivsock_slot_claim(&l->slot, vm, client);
		if (!g)
			continue;
		ivsock_copy_to_shared(&l->addr, addr, sizeof(*addr));
		ivsock_st16(&l->port, port);
		ivsock_st16(&l->reserved, (uint16_t)flags);
		ivsock_st32(&l->vm_index, (uint32_t)vm);
		/* Publish the fields with the state (release). */
		if (ivsock_slot_move(&l->slot, g, IVSOCK_SLOT_INIT, IVSOCK_LISTENER_ACTIVE) < 0) {
			ivsock_slot_release(&l->slot, g);
			return -EAGAIN;
		}
		*gen = g;
		return (int)i;
	}
	return -ENOSPC;
}

int ivsock_listener_remove(struct ivsock_region *rg, uint32_t idx, uint32_t gen)
{
	if (idx >= rg->listener_cap)
		return -EINVAL;
	return ivsock_slot_release(&rg->listeners[idx].slot, gen);
}

static bool matches(const struct ivsock_listener *l, const struct ivsock_addr *la,
		    uint16_t lport, unsigned int lflags,
		    const struct ivsock_addr *dst, uint16_t port)
{
	(void)l;
	if (lport != port)
		return false;
	if (ivsock_addr_equal(la, dst))
		return true;
	if (!ivsock_addr_is_any(la))
		return false;
	if (la->family == dst->family)
		return true;
	return la->family == IVSOCK_AF_INET6 && dst->family == IVSOCK_AF_INET &&
	       !(lflags & IVSOCK_LISTENER_V6ONLY);
}

int ivsock_listener_find(const struct ivsock_region *rg, uint32_t vm,
			 const struct ivsock_addr *dst, uint16_t port)
{
	uint32_t i;

	for (i = 0; i < rg->listener_cap; i++) {
		struct ivsock_listener *l = &rg->listeners[i];
		struct ivsock_slot_val v = ivsock_slot_get(&l->slot);
		struct ivsock_addr a;
		uint16_t p, f;

		if (v.state != IVSOCK_LISTENER_ACTIVE || v.vm != vm)
			continue;
		/* Copy once, then check the slot did not change under us. */
		ivsock_copy_from_shared(&a, &l->addr, sizeof(a));
		p = ivsock_ld16(&l->port);
		f = ivsock_ld16(&l->reserved);
		if (ivsock_slot_get(&l->slot).gen != v.gen)
			continue;
		if (matches(l, &a, p, f, dst, port))
			return (int)i;
	}
	return -ENOENT;
}

int ivsock_listener_release_vm(struct ivsock_region *rg, uint8_t vm)
{
	uint32_t i;
	int n = 0;

	for (i = 0; i < rg->listener_cap; i++) {
		struct ivsock_slot_val v = ivsock_slot_get(&rg->listeners[i].slot);

		if (v.state != IVSOCK_SLOT_FREE && v.vm == vm &&
		    ivsock_slot_release(&rg->listeners[i].slot, v.gen) == 0)
			n++;
	}
	return n;
}

int ivsock_listener_release_owner(struct ivsock_region *rg, uint8_t vm, uint16_t client)
{
	uint32_t i;
	int n = 0;

	for (i = 0; i < rg->listener_cap; i++) {
		struct ivsock_slot_val v = ivsock_slot_get(&rg->listeners[i].slot);

		if (ivsock_slot_owned_by(v, vm, client) &&
		    ivsock_slot_release(&rg->listeners[i].slot, v.gen) == 0)
			n++;
	}
	return n;
}
