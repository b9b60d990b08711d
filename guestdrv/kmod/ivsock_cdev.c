// SPDX-License-Identifier: GPL-2.0
/*
 * ivsock.ko, character-device half: /dev/ivsockN with mmap of the shared
 * region and of the doorbell page, the ioctls of ivsock(4), and the
 * poisoning of open files and mappings when the device goes away.
 */
#include <linux/eventfd.h>
#include <linux/fs.h>
#include <linux/mm.h>
#include <linux/poll.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "ivsock.h"

#define IVSOCK_REGS_PGOFF (IVSOCK_DEV_MMAP_REGS >> PAGE_SHIFT)

static int ivsock_open(struct inode *inode, struct file *filp)
{
	/* misc_open() runs us under misc_mtx: remove() cannot race past. */
	struct miscdevice *misc = filp->private_data;
	struct ivsock_dev *dev = container_of(misc, struct ivsock_dev, misc);
	struct ivsock_file *f;

	f = kzalloc(sizeof(*f), GFP_KERNEL);
	if (!f)
		return -ENOMEM;
	kref_get(&dev->kref);
	f->dev = dev;
	f->filp = filp;

	mutex_lock(&dev->files_lock);
	list_add(&f->node, &dev->files);
	mutex_unlock(&dev->files_lock);

	filp->private_data = f;
	return 0;
}

/* Drop every binding of @owner, or of everybody if @owner is NULL. */
static void ivsock_bindings_drop(struct ivsock_dev *dev,
				 struct ivsock_file *owner, bool signal)
{
	struct ivsock_binding *b, *tmp;
	LIST_HEAD(dead);
	u32 i;

	spin_lock_irq(&dev->bind_lock);
	for (i = 0; i < dev->nvec; i++) {
		list_for_each_entry_safe(b, tmp, &dev->vecs[i].bindings, node) {
			if (owner && b->owner != owner)
				continue;
			if (signal)
				ivsock_eventfd_signal(b->ctx);
			list_move(&b->node, &dead);
		}
	}
	spin_unlock_irq(&dev->bind_lock);

	list_for_each_entry_safe(b, tmp, &dead, node) {
		eventfd_ctx_put(b->ctx);
		kfree(b);
	}
}

/* On unplug: every bound eventfd fires once so that sleepers wake up. */
void ivsock_bindings_signal_all(struct ivsock_dev *dev)
{
	ivsock_bindings_drop(dev, NULL, true);
}

static int ivsock_release(struct inode *inode, struct file *filp)
{
	struct ivsock_file *f = filp->private_data;
	struct ivsock_dev *dev = f->dev;

	ivsock_bindings_drop(dev, f, false);

	mutex_lock(&dev->files_lock);
	list_del(&f->node);
	mutex_unlock(&dev->files_lock);

	kfree(f);
	ivsock_dev_put(dev);
	return 0;
}

static int ivsock_ioc_bind(struct ivsock_file *f,
			   const struct ivsock_dev_bind *arg)
{
	struct ivsock_dev *dev = f->dev;
	struct ivsock_binding *nb, *b;
	struct eventfd_ctx *old = NULL;
	struct eventfd_ctx *ctx;

	if (arg->vector >= dev->nvec)
		return -EINVAL;
	ctx = eventfd_ctx_fdget(arg->eventfd);
	if (IS_ERR(ctx))
		return PTR_ERR(ctx);
	nb = kzalloc(sizeof(*nb), GFP_KERNEL);
	if (!nb) {
		eventfd_ctx_put(ctx);
		return -ENOMEM;
	}
	nb->owner = f;
	nb->ctx = ctx;

	spin_lock_irq(&dev->bind_lock);
	list_for_each_entry(b, &dev->vecs[arg->vector].bindings, node) {
		if (b->owner == f) {
			old = b->ctx;	/* binding again replaces */
			b->ctx = ctx;
			break;
		}
	}
	if (!old)
		list_add_tail(&nb->node, &dev->vecs[arg->vector].bindings);
	spin_unlock_irq(&dev->bind_lock);

	if (old) {
		eventfd_ctx_put(old);
		kfree(nb);
	}
	dev_dbg(&dev->pdev->dev, "file %p: vector %u bound%s\n", f,
		arg->vector, old ? " (replaced)" : "");
	return 0;
}

static int ivsock_ioc_unbind(struct ivsock_file *f, u32 vector)
{
	struct ivsock_dev *dev = f->dev;
	struct ivsock_binding *b, *found = NULL;

	if (vector >= dev->nvec)
		return -EINVAL;
	spin_lock_irq(&dev->bind_lock);
	list_for_each_entry(b, &dev->vecs[vector].bindings, node) {
		if (b->owner == f) {
			found = b;
			list_del(&b->node);
			break;
		}
	}
	spin_unlock_irq(&dev->bind_lock);
	if (!found)
		return -ENOENT;
	eventfd_ctx_put(found->ctx);
	kfree(found);
	dev_dbg(&dev->pdev->dev, "file %p: vector %u unbound\n", f, vector);
	return 0;
}

static long ivsock_ioctl(struct file *filp, unsigned int cmd,
			 unsigned long uarg)
{
	struct ivsock_file *f = filp->private_data;
	struct ivsock_dev *dev = f->dev;
	void __user *argp = (void __user *)uarg;
	union {
		struct ivsock_dev_info info;
		struct ivsock_dev_ring ring;
		struct ivsock_dev_bind bind;
		u32 vector;
	} a;
	long ret;

	/*
	 * Copy in before taking dev->lock: a fault on the user buffer can
	 * land in ivsock_fault(), which takes dev->lock for reading, and a
	 * writer queued in between would deadlock the nested read.
	 */
	switch (cmd) {
	case IVSOCK_IOC_WINDOW:
		return ivsock_win_cut(f, argp);
	case IVSOCK_IOC_WIN_BUSY:
	case IVSOCK_IOC_WIN_REVOKE:
		return ivsock_win_range(dev, cmd, argp);
	case IVSOCK_IOC_INFO:
		break;
	case IVSOCK_IOC_RING:
		if (copy_from_user(&a.ring, argp, sizeof(a.ring)))
			return -EFAULT;
		if (a.ring.reserved)
			return -EINVAL;
		break;
	case IVSOCK_IOC_BIND:
		if (copy_from_user(&a.bind, argp, sizeof(a.bind)))
			return -EFAULT;
		break;
	case IVSOCK_IOC_UNBIND:
		if (copy_from_user(&a.vector, argp, sizeof(a.vector)))
			return -EFAULT;
		break;
	default:
		return -ENOTTY;
	}

	down_read(&dev->lock);
	if (dev->dead) {
		up_read(&dev->lock);
		return -ENODEV;
	}
	switch (cmd) {
	case IVSOCK_IOC_INFO:
		memset(&a.info, 0, sizeof(a.info));
		a.info.api_version = IVSOCK_DEV_API_VERSION;
		a.info.peer_id = readl(dev->regs + IVSOCK_DEV_REG_IVPOSITION);
		a.info.region_size = dev->shm_len;
		a.info.vectors = dev->nvec;
		a.info.flags = dev->flags;
		ret = 0;
		break;
	case IVSOCK_IOC_RING:
		writel((u32)a.ring.peer << 16 | a.ring.vector,
		       dev->regs + IVSOCK_DEV_REG_DOORBELL);
		ret = 0;
		break;
	case IVSOCK_IOC_BIND:
		ret = ivsock_ioc_bind(f, &a.bind);
		break;
	default:
		ret = ivsock_ioc_unbind(f, a.vector);
		break;
	}
	up_read(&dev->lock);

	if (!ret && cmd == IVSOCK_IOC_INFO &&
	    copy_to_user(argp, &a.info, sizeof(a.info)))
		ret = -EFAULT;
	return ret;
}

/*
 * Mappings are filled at fault time, not in mmap(): a vma becomes visible
 * to unmap_mapping_range() only after ->mmap returns, so a mapping made in
 * ->mmap could escape remove()'s zap. Faults check @dead under dev->lock.
 * The first fault fills the whole vma, so a region costs one fault.
 */
static vm_fault_t ivsock_fault(struct vm_fault *vmf)
{
	struct vm_area_struct *vma = vmf->vma;
	struct ivsock_file *f = vma->vm_file->private_data;
	struct ivsock_dev *dev = f->dev;
	unsigned long addr, pfn;
	vm_fault_t ret = VM_FAULT_NOPAGE;

	down_read(&dev->lock);
	if (dev->dead) {
		ret = VM_FAULT_SIGBUS;
		goto out;
	}
	if (vma->vm_pgoff >= IVSOCK_REGS_PGOFF)
		pfn = (dev->regs_start >> PAGE_SHIFT) +
		      (vma->vm_pgoff - IVSOCK_REGS_PGOFF);
	else
		pfn = (dev->shm_start >> PAGE_SHIFT) + vma->vm_pgoff;

	for (addr = vma->vm_start; addr < vma->vm_end; addr += PAGE_SIZE) {
		ret = vmf_insert_pfn(vma, addr, pfn++);
		if (ret & VM_FAULT_ERROR)
			break;
	}
	if (!(ret & VM_FAULT_ERROR))
		ret = VM_FAULT_NOPAGE;
out:
	up_read(&dev->lock);
	return ret;
}

static const struct vm_operations_struct ivsock_vm_ops = {
	.fault = ivsock_fault,
};

static int ivsock_mmap(struct file *filp, struct vm_area_struct *vma)
{
	struct ivsock_file *f = filp->private_data;
	struct ivsock_dev *dev = f->dev;
	unsigned long len = vma->vm_end - vma->vm_start;
	unsigned long pgoff = vma->vm_pgoff;
	int ret = 0;

	/* Private (COW) mappings of device memory make no sense. */
	if (!(vma->vm_flags & VM_SHARED))
		return -EINVAL;

	down_read(&dev->lock);
	if (dev->dead) {
		ret = -ENODEV;
	} else if (pgoff == IVSOCK_REGS_PGOFF) {
		if (!(dev->flags & IVSOCK_DEV_F_REGS_MAP))
			ret = -ENODEV;
		else if (len > PAGE_SIZE)
			ret = -EINVAL;
		else
			vma->vm_page_prot = pgprot_noncached(vma->vm_page_prot);
	} else if (pgoff >= IVSOCK_REGS_PGOFF ||
		   (u64)pgoff << PAGE_SHIFT >= dev->shm_len ||
		   len > dev->shm_len - ((u64)pgoff << PAGE_SHIFT)) {
		ret = -EINVAL;
	}
	up_read(&dev->lock);
	if (ret)
		return ret;

	ivsock_vm_flags_set(vma, VM_IO | VM_PFNMAP | VM_DONTEXPAND |
				 VM_DONTDUMP);
	vma->vm_ops = &ivsock_vm_ops;
	return 0;
}

static __poll_t ivsock_poll(struct file *filp, poll_table *wait)
{
	struct ivsock_file *f = filp->private_data;
	struct ivsock_dev *dev = f->dev;

	poll_wait(filp, &dev->unplug_wq, wait);
	/* Pairs with ivsock_cdev_hangup(): HUP implies the zap is done. */
	if (smp_load_acquire(&dev->hung_up))
		return EPOLLHUP | EPOLLERR;
	return 0;
}

static const struct file_operations ivsock_fops = {
	.owner = THIS_MODULE,
	.open = ivsock_open,
	.release = ivsock_release,
	.unlocked_ioctl = ivsock_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.mmap = ivsock_mmap,
	.poll = ivsock_poll,
	.llseek = noop_llseek,
};

int ivsock_cdev_register(struct ivsock_dev *dev)
{
	dev->misc.minor = MISC_DYNAMIC_MINOR;
	dev->misc.name = dev->name;
	dev->misc.fops = &ivsock_fops;
	dev->misc.parent = &dev->pdev->dev;
	dev->misc.mode = 0600;
	return misc_register(&dev->misc);
}

/*
 * First step of remove(): no new opens, no new hardware access, user
 * mappings zapped (the vmas stay; their next access faults and gets SIGBUS
 * from ivsock_fault()).
 */
void ivsock_cdev_unplug(struct ivsock_dev *dev)
{
	struct ivsock_file *f;

	misc_deregister(&dev->misc);

	down_write(&dev->lock);
	dev->dead = true;
	up_write(&dev->lock);

	/* Files with live mappings are still open: vmas pin their file. */
	mutex_lock(&dev->files_lock);
	list_for_each_entry(f, &dev->files, node)
		unmap_mapping_range(f->filp->f_mapping, 0, 0, 1);
	mutex_unlock(&dev->files_lock);

	/* Windows whose device file is closed: their vmas are still linked. */
	ivsock_win_unplug(dev);
}

/*
 * Last step of remove(), once mappings are zapped and bound eventfds
 * signalled: poll() reports HUP. Waking pollers earlier would let them
 * touch a mapping that the zap has not reached yet.
 */
void ivsock_cdev_hangup(struct ivsock_dev *dev)
{
	/* Orders the zap and the signals before HUP; see ivsock_poll(). */
	smp_store_release(&dev->hung_up, true);
	wake_up_all(&dev->unplug_wq);
}
