/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Private header of ivsock.ko: per-device and per-open-file state shared by
 * the PCI half (ivsock_pci.c) and the character-device half (ivsock_cdev.c).
 */
#ifndef IVSOCK_KMOD_H
#define IVSOCK_KMOD_H

#include <linux/kref.h>
#include <linux/list.h>
#include <linux/miscdevice.h>
#include <linux/mutex.h>
#include <linux/pci.h>
#include <linux/rwsem.h>
#include <linux/spinlock.h>
#include <linux/version.h>
#include <linux/wait.h>

#include <ivsock/ivsock_dev.h>

#define IVSOCK_NAME "ivsock"

/* BAR layout of QEMU's ivshmem (docs/specs/ivshmem-spec.txt). */
#define IVSOCK_BAR_REGS    0
#define IVSOCK_BAR_MSIX    1
#define IVSOCK_BAR_SHM     2
#define IVSOCK_REG_INTRMASK   0x00
#define IVSOCK_REG_INTRSTATUS 0x04

#ifdef IVSOCK_DEBUG
#define IVSOCK_WARN_ON(cond) WARN_ON(cond)
#else
#define IVSOCK_WARN_ON(cond) ((void)(0 && (cond)))
#endif

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 8, 0)
#define ivsock_eventfd_signal(ctx) eventfd_signal(ctx)
#else
#define ivsock_eventfd_signal(ctx) eventfd_signal(ctx, 1)
#endif

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 3, 0)
#define ivsock_vm_flags_set(vma, f) vm_flags_set(vma, f)
#else
#define ivsock_vm_flags_set(vma, f) ((vma)->vm_flags |= (f))
#endif

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 3, 0)
#define ivsock_vm_flags_clear(vma, f) vm_flags_clear(vma, f)
#else
#define ivsock_vm_flags_clear(vma, f) ((vma)->vm_flags &= ~(f))
#endif

/* PCI_IRQ_LEGACY was renamed in 6.8 and later removed. */
#ifndef PCI_IRQ_INTX
#define PCI_IRQ_INTX PCI_IRQ_LEGACY
#endif

struct ivsock_dev;

/* One MSI-X vector (or the single INTx line as vector 0). */
struct ivsock_vec {
	struct ivsock_dev *dev;
	u32 index;
	/* struct ivsock_binding, under dev->bind_lock */
	struct list_head bindings;
};

/* An eventfd that one open file bound to one vector. */
struct ivsock_binding {
	struct list_head node;		/* in ivsock_vec.bindings */
	struct ivsock_file *owner;
	struct eventfd_ctx *ctx;
};

/* Per open file of /dev/ivsockN. */
struct ivsock_file {
	struct ivsock_dev *dev;		/* holds a kref */
	struct file *filp;
	struct list_head node;		/* in dev->files, under files_lock */
};

/*
 * One ivshmem device. Lifetime: a kref held by probe and by each open file;
 * the PCI resources (BARs, IRQs) live only from probe to remove, guarded by
 * @dead under @lock, so files that outlive the device never touch hardware.
 */
struct ivsock_dev {
	struct kref kref;
	struct pci_dev *pdev;
	int index;			/* N of /dev/ivsockN */
	char name[16];
	struct miscdevice misc;

	/*
	 * Readers: ioctl, mmap, page faults. Writer: remove(), which sets
	 * @dead once; after that no path touches @regs or the BARs.
	 */
	struct rw_semaphore lock;
	bool dead;

	void __iomem *regs;		/* BAR0 */
	void *shm;			/* BAR2, memremap(WB): reserves memtype */
	resource_size_t regs_start;
	resource_size_t shm_start;
	resource_size_t shm_len;
	struct resource *regs_pad;	/* rest of BAR0's page, if reserved */
	u32 peer_id;
	u32 flags;			/* IVSOCK_DEV_F_* */

	u32 nvec;
	struct ivsock_vec *vecs;
	spinlock_t bind_lock;		/* the vecs[].bindings lists */

	struct mutex files_lock;	/* protects @files */
	struct list_head files;		/* struct ivsock_file */

	/*
	 * Windows (ivsock_win.c) with an open file, so also every window
	 * still mapped somewhere. Lock order: @lock -> @win_lock ->
	 * i_mmap_rwsem.
	 */
	struct mutex win_lock;		/* protects @windows */
	struct list_head windows;	/* struct ivsock_win */

	/*
	 * Set last in remove(), after mappings are zapped and eventfds
	 * signalled: a poller that sees HUP finds the device fully revoked.
	 */
	bool hung_up;
	wait_queue_head_t unplug_wq;	/* poll() waiters, woken on remove */
};

void ivsock_dev_put(struct ivsock_dev *dev);
int ivsock_cdev_register(struct ivsock_dev *dev);
void ivsock_cdev_unplug(struct ivsock_dev *dev);
void ivsock_cdev_hangup(struct ivsock_dev *dev);
void ivsock_bindings_signal_all(struct ivsock_dev *dev);
long ivsock_win_cut(struct ivsock_file *f,
		    struct ivsock_dev_window __user *uarg);
long ivsock_win_range(struct ivsock_dev *dev, unsigned int cmd,
		      struct ivsock_dev_range __user *uarg);
void ivsock_win_unplug(struct ivsock_dev *dev);

#endif
