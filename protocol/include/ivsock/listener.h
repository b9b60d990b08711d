/* SPDX-License-Identifier: MIT */
/*
 * Listener registry: a shimmed process registers (address, port) at listen()
 * so that connectors know the far side will look for their offer.
 */
#ifndef IVSOCK_LISTENER_H
#define IVSOCK_LISTENER_H

#include "ivsock/layout.h"

enum { IVSOCK_LISTENER_V6ONLY = 1U << 0 }; /* in ivsock_listener.reserved */

/* @return slot index (>= 0) with *gen set, or -ENOSPC / -EINVAL. */
int ivsock_listener_add(struct ivsock_region *rg, uint8_t vm, uint16_t client,
			const struct ivsock_addr *addr, uint16_t port,
			unsigned int flags, uint32_t *gen);
/* @return 0 or -ESTALE. */
int ivsock_listener_remove(struct ivsock_region *rg, uint32_t idx, uint32_t gen);
/*
 * Is there a listener in VM vm for (dst, port)? Matches the exact address or
 * a wildcard of the same family (an IPv6 wildcard also takes IPv4 unless
 * V6ONLY). @return slot index or -ENOENT.
 */
int ivsock_listener_find(const struct ivsock_region *rg, uint32_t vm,
			 const struct ivsock_addr *dst, uint16_t port);
/* Free every listener of (vm, client). @return how many. */
int ivsock_listener_release_owner(struct ivsock_region *rg, uint8_t vm, uint16_t client);
/* Free every listener of VM vm, any client (ivsockd, dead VM). @return how many. */
int ivsock_listener_release_vm(struct ivsock_region *rg, uint8_t vm);

#endif
