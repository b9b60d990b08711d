/* SPDX-License-Identifier: MIT */
/*
 * The VM directory: who is in the trust domain, at which ivshmem peer ID,
 * under which name and addresses. ivsockd is the only writer; everyone else
 * reads snapshots that are validated before use.
 */
#ifndef IVSOCK_DIRECTORY_H
#define IVSOCK_DIRECTORY_H

#include "ivsock/layout.h"

/* A validated private copy of one directory entry. */
struct ivsock_vm_info {
	uint32_t index;
	uint32_t gen;
	uint8_t state;            /* IVSOCK_VM_ALIVE / IVSOCK_VM_DEAD */
	uint32_t peer_id;
	uint32_t vectors;
	char name[IVSOCK_NAME_MAX];   /* always NUL-terminated */
	uint8_t uuid[16];
	uint32_t naddrs;          /* <= IVSOCK_VM_MAX_ADDRS */
	struct ivsock_addr addrs[IVSOCK_VM_MAX_ADDRS];
};

/* ---- ivsockd (single writer) ---- */

/* Add a VM: @return its index (>= 0) or -ENOSPC / -EINVAL. */
int ivsock_dir_add(struct ivsock_region *rg, uint32_t peer_id, uint32_t vectors,
		   const char *name, const uint8_t uuid[16]);
/* Replace the VM's addresses (seqlock write). @return 0 or -EINVAL. */
int ivsock_dir_set_addrs(struct ivsock_region *rg, uint32_t vm,
			 const struct ivsock_addr *addrs, uint32_t n);
int ivsock_dir_set_name(struct ivsock_region *rg, uint32_t vm, const char *name,
			const uint8_t uuid[16]);
/* ALIVE -> DEAD. @return 0 or -ESTALE. */
int ivsock_dir_mark_dead(struct ivsock_region *rg, uint32_t vm);
/* Free the entry (after its partition was reclaimed). */
int ivsock_dir_remove(struct ivsock_region *rg, uint32_t vm);

/* ---- readers (any process) ---- */

/* Snapshot of entry vm. @return 0, -ENOENT (free), -EINVAL, -EAGAIN (torn
 * repeatedly: writer busy or hostile). */
int ivsock_dir_read(const struct ivsock_region *rg, uint32_t vm,
		    struct ivsock_vm_info *out);
/* Live VM with this peer ID: @return index or -ENOENT. */
int ivsock_dir_find_peer(const struct ivsock_region *rg, uint32_t peer_id);
/* Live VM owning this address: @return index or -ENOENT. */
int ivsock_dir_find_addr(const struct ivsock_region *rg, const struct ivsock_addr *a);
/* Is VM vm alive with generation gen (gen 0 = any)? */
bool ivsock_dir_alive(const struct ivsock_region *rg, uint32_t vm, uint32_t gen);

#endif
