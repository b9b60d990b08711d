/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * User-space API of /dev/ivsockN, the guest driver for QEMU's
 * ivshmem-doorbell PCI device (1af4:1110). Shared verbatim by the kernel
 * module (guestdrv/kmod) and user space (agent, shim). See ivsock(4).
 */
#ifndef IVSOCK_DEV_H
#define IVSOCK_DEV_H

#include <linux/types.h>
#include <linux/ioctl.h>

#define IVSOCK_DEV_API_VERSION 1

/* IVSOCK_IOC_INFO: what this device is. */
struct ivsock_dev_info {
	__u32 api_version;   /* IVSOCK_DEV_API_VERSION */
	__u32 peer_id;       /* BAR0 IVPosition: our ivshmem peer ID */
	__u64 region_size;   /* BAR2 length in bytes */
	__u32 vectors;       /* MSI-X vectors enabled */
	__u32 flags;         /* IVSOCK_DEV_F_* */
};

enum {
	IVSOCK_DEV_F_MSIX     = 1U << 0, /* interrupts are MSI-X (else INTx, vector 0 only) */
	IVSOCK_DEV_F_REGS_MAP = 1U << 1, /* doorbell page can be mmapped */
};

/* IVSOCK_IOC_RING: ring (peer, vector); a BAR0 Doorbell write. */
struct ivsock_dev_ring {
	__u16 peer;
	__u16 vector;
	__u32 reserved;      /* must be 0 */
};

/* IVSOCK_IOC_BIND: signal eventfd when vector fires. One eventfd per vector
 * and per open file; binding again replaces. */
struct ivsock_dev_bind {
	__s32 eventfd;
	__u32 vector;
};

#define IVSOCK_IOC_MAGIC  0xb7
#define IVSOCK_IOC_INFO   _IOR(IVSOCK_IOC_MAGIC, 0x01, struct ivsock_dev_info)
#define IVSOCK_IOC_RING   _IOW(IVSOCK_IOC_MAGIC, 0x02, struct ivsock_dev_ring)
#define IVSOCK_IOC_BIND   _IOW(IVSOCK_IOC_MAGIC, 0x03, struct ivsock_dev_bind)
#define IVSOCK_IOC_UNBIND _IOW(IVSOCK_IOC_MAGIC, 0x04, __u32)

/*
 * mmap offsets. [0, region_size) maps BAR2 (the shared region).
 * IVSOCK_DEV_MMAP_REGS maps one page of BAR0 (registers: IntrMask 0x0,
 * IntrStatus 0x4, IVPosition 0x8, Doorbell 0xc) so that a process can ring a
 * peer with one 32-bit store of (peer << 16 | vector) at offset 0xc.
 */
#define IVSOCK_DEV_MMAP_REGS  (1ULL << 40)
#define IVSOCK_DEV_REG_IVPOSITION 0x08
#define IVSOCK_DEV_REG_DOORBELL   0x0c

#endif
