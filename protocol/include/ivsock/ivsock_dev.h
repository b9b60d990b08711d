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

#define IVSOCK_DEV_API_VERSION 2

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
 * Windows (API 2). The device node is root-only; its holder (the agent) cuts
 * windows for unprivileged processes: a window is a new fd that can map only
 * [offset, offset + length) of BAR2, writable only over its writable part,
 * and can ring only one peer. This is how the kernel keeps the processes of
 * one VM apart: a process holds windows onto its own channels' blocks and a
 * read-only window onto the tables, never the device node.
 */
#define IVSOCK_WIN_NO_RING 0xffffffffU /* ring_peer: this window rings nobody */

/* IVSOCK_IOC_WINDOW (device fd): cut a window. */
struct ivsock_dev_window {
	__u64 offset;      /* in BAR2; page aligned */
	__u64 length;      /* page multiple, > 0, inside BAR2 */
	__u64 wr_offset;   /* writable part, relative to offset; page aligned */
	__u64 wr_length;   /* page multiple; 0: a read-only window */
	__u32 ring_peer;   /* the only ivshmem peer IVSOCK_IOC_WIN_RING may ring,
			    * or IVSOCK_WIN_NO_RING */
	__u32 flags;       /* must be 0 */
	__s32 fd;          /* out: the window, O_RDWR | O_CLOEXEC */
	__u32 reserved;    /* must be 0 */
};

/* IVSOCK_IOC_WIN_BUSY / IVSOCK_IOC_WIN_REVOKE (device fd): a byte range of
 * BAR2. BUSY counts the live windows (open fds or mappings) overlapping it;
 * REVOKE makes each of them dead: its mappings are zapped (the next access
 * gets SIGBUS), later mmap or ring on it fail with ENODEV. */
struct ivsock_dev_range {
	__u64 offset;
	__u64 length;
	__u64 count;       /* out (BUSY: windows; REVOKE: windows revoked) */
};

#define IVSOCK_IOC_WINDOW     _IOWR(IVSOCK_IOC_MAGIC, 0x05, struct ivsock_dev_window)
#define IVSOCK_IOC_WIN_BUSY   _IOWR(IVSOCK_IOC_MAGIC, 0x06, struct ivsock_dev_range)
#define IVSOCK_IOC_WIN_REVOKE _IOWR(IVSOCK_IOC_MAGIC, 0x07, struct ivsock_dev_range)

/* On a window fd. INFO: what the window is (fd is -1). RING: one doorbell to
 * (ring_peer, vector); EPERM if the window rings nobody, EINVAL if vector is
 * out of range, ENODEV once revoked or unplugged. Every other device ioctl
 * on a window fd fails with ENOTTY. */
#define IVSOCK_IOC_WIN_INFO   _IOR(IVSOCK_IOC_MAGIC, 0x10, struct ivsock_dev_window)
#define IVSOCK_IOC_WIN_RING   _IOW(IVSOCK_IOC_MAGIC, 0x11, __u32)

/*
 * mmap of a window fd: the file offset is relative to the window; the whole
 * mapping must lie inside it (EINVAL) and be MAP_SHARED (EINVAL). PROT_WRITE
 * is allowed only if the mapping lies inside the writable part (EACCES); any
 * other mapping is read-only for good (mprotect cannot add PROT_WRITE).
 */

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
