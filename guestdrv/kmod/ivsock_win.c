// SPDX-License-Identifier: GPL-2.0
/*
 * ivsock.ko, windows (API 2): a file, cut by the holder of /dev/ivsockN,
 * that maps one page-aligned range of BAR2 (writable over one part of it
 * only) and rings one peer only. Windows are revoked by range before the
 * range is reused, and poisoned with their device on unplug.
 *
 * A window file is an anon-inode file. Its f_mapping is not the anon
 * inode's mapping (one for the whole system) but the address_space of the
 * device node it was cut from, and its vmas carry the absolute BAR2 page
 * offset plus IVSOCK_WIN_MAP_BASE, so one unmap_mapping_range() over
 * IVSOCK_WIN_MAP_BASE + a byte range of BAR2 reaches every vma of every
 * window onto it, and none of the device's own mappings (which live below
 * IVSOCK_DEV_MMAP_REGS + one page).
 */
#include <linux/anon_inodes.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/mm.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "ivsock.h"

/* Where window vmas live in the device node's mapping: above the regs. */
#define IVSOCK_WIN_MAP_BASE   (2 * IVSOCK_DEV_MMAP_REGS)
#define IVSOCK_WIN_PGOFF      (IVSOCK_WIN_MAP_BASE >> PAGE_SHIFT)

/* ivshmem doorbells carry a 16-bit peer and a 16-bit vector. */
#define IVSOCK_WIN_MAX_PEER   0xffffU
#define IVSOCK_WIN_MAX_VECTOR 0xffffU

struct ivsock_win {
	struct ivsock_dev *dev;		/* holds a kref */
	struct list_head node;		/* in dev->windows, under win_lock */
	struct inode *inode;		/* holds @mapping's inode */
	struct address_space *mapping;	/* of the device node; see above */
	u64 offset;			/* in BAR2, page aligned */
	u64 length;
	u64 wr_offset;			/* relative to @offset */
	u64 wr_length;
	u32 ring_peer;			/* or IVSOCK_WIN_NO_RING */
	bool revoked;			/* set under dev->lock (write) */
};

static void ivsock_win_free(struct ivsock_win *w)
{
	iput(w->inode);
	ivsock_dev_put(w->dev);
	kfree(w);
}

static int ivsock_win_release(struct inode *inode, struct file *file)
{
	struct ivsock_win *w = file->private_data;
	struct ivsock_dev *dev = w->dev;

	/* No vma is left: each holds the file. */
	mutex_lock(&dev->win_lock);
	list_del(&w->node);
	mutex_unlock(&dev->win_lock);
	ivsock_win_free(w);
	return 0;
}

static bool ivsock_win_live(const struct ivsock_win *w)
{
	return !w->dev->dead && !w->revoked;
}

/*
 * As ivsock_fault(): mmap() leaves the vma empty, the first fault fills it
 * all, under dev->lock (read) so that a revoke or an unplug (which set
 * their flag under the write side before zapping) either zaps what we
 * insert or makes us return SIGBUS.
 */
static vm_fault_t ivsock_win_fault(struct vm_fault *vmf)
{
	struct vm_area_struct *vma = vmf->vma;
	struct ivsock_win *w = vma->vm_file->private_data;
	struct ivsock_dev *dev = w->dev;
	u64 first = IVSOCK_WIN_PGOFF + (w->offset >> PAGE_SHIFT);
	u64 npages = w->length >> PAGE_SHIFT;
	u64 wr_first = first + (w->wr_offset >> PAGE_SHIFT);
	u64 wr_end = wr_first + (w->wr_length >> PAGE_SHIFT);
	u64 pgoff = vma->vm_pgoff, n = vma_pages(vma);
	vm_fault_t ret = VM_FAULT_SIGBUS;
	unsigned long addr, pfn;

	down_read(&dev->lock);
	if (!ivsock_win_live(w))
		goto out;
	/*
	 * mmap() put the vma inside the window (and inside its writable part
	 * if it may write); split, mremap and mprotect can only shrink, move
	 * or restrict it. Checked again because a miss would expose memory.
	 */
	if (pgoff < first || pgoff - first >= npages ||
	    n > npages - (pgoff - first) ||
	    ((vma->vm_flags & VM_WRITE) &&
	     (pgoff < wr_first || pgoff >= wr_end || n > wr_end - pgoff))) {
		IVSOCK_WARN_ON(1);
		goto out;
	}
	pfn = (dev->shm_start >> PAGE_SHIFT) + (pgoff - IVSOCK_WIN_PGOFF);
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

static const struct vm_operations_struct ivsock_win_vm_ops = {
	.fault = ivsock_win_fault,
};

static int ivsock_win_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct ivsock_win *w = file->private_data;
	struct ivsock_dev *dev = w->dev;
	u64 npages = w->length >> PAGE_SHIFT;
	u64 wr_first = w->wr_offset >> PAGE_SHIFT;
	u64 wr_n = w->wr_length >> PAGE_SHIFT;
	u64 pgoff = vma->vm_pgoff, n = vma_pages(vma);
	bool writable;
	int ret = 0;

	if (!(vma->vm_flags & VM_SHARED))
		return -EINVAL;
	if (pgoff >= npages || n > npages - pgoff)
		return -EINVAL;
	writable = pgoff >= wr_first && pgoff - wr_first < wr_n &&
		   n <= wr_n - (pgoff - wr_first);
	if ((vma->vm_flags & VM_WRITE) && !writable)
		return -EACCES;

	down_read(&dev->lock);
	if (!ivsock_win_live(w))
		ret = -ENODEV;
	up_read(&dev->lock);
	if (ret)
		return ret;

	/* Read-only for good: mprotect(PROT_WRITE) needs VM_MAYWRITE. */
	if (!writable)
		ivsock_vm_flags_clear(vma, VM_MAYWRITE);
	ivsock_vm_flags_set(vma, VM_IO | VM_PFNMAP | VM_DONTEXPAND |
				 VM_DONTDUMP);
	/* Absolute BAR2 page offset, moved up: see the top of this file. */
	vma->vm_pgoff = IVSOCK_WIN_PGOFF + (w->offset >> PAGE_SHIFT) + pgoff;
	vma->vm_ops = &ivsock_win_vm_ops;
	return 0;
}

static void ivsock_win_to_user(const struct ivsock_win *w,
			       struct ivsock_dev_window *a)
{
	memset(a, 0, sizeof(*a));
	a->offset = w->offset;
	a->length = w->length;
	a->wr_offset = w->wr_offset;
	a->wr_length = w->wr_length;
	a->ring_peer = w->ring_peer;
	a->fd = -1;
}

static long ivsock_win_ioctl(struct file *file, unsigned int cmd,
			     unsigned long uarg)
{
	struct ivsock_win *w = file->private_data;
	struct ivsock_dev *dev = w->dev;
	void __user *argp = (void __user *)uarg;
	struct ivsock_dev_window info;
	u32 vector;
	long ret = 0;

	switch (cmd) {
	case IVSOCK_IOC_WIN_INFO:
		ivsock_win_to_user(w, &info);
		if (copy_to_user(argp, &info, sizeof(info)))
			return -EFAULT;
		return 0;
	case IVSOCK_IOC_WIN_RING:
		if (get_user(vector, (u32 __user *)argp))
			return -EFAULT;
		if (w->ring_peer == IVSOCK_WIN_NO_RING)
			return -EPERM;
		/* The peer's vector count is unknown here; the 16 bits of
		 * the register are the limit, so the peer field stays ours.
		 */
		if (vector > IVSOCK_WIN_MAX_VECTOR)
			return -EINVAL;
		down_read(&dev->lock);
		if (!ivsock_win_live(w))
			ret = -ENODEV;
		else
			writel(w->ring_peer << 16 | vector,
			       dev->regs + IVSOCK_DEV_REG_DOORBELL);
		up_read(&dev->lock);
		return ret;
	default:
		return -ENOTTY;
	}
}

static const struct file_operations ivsock_win_fops = {
	.owner = THIS_MODULE,
	.release = ivsock_win_release,
	.unlocked_ioctl = ivsock_win_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.mmap = ivsock_win_mmap,
	.llseek = noop_llseek,
};

static int ivsock_win_check(const struct ivsock_dev *dev,
			    const struct ivsock_dev_window *a)
{
	if (a->flags || a->reserved)
		return -EINVAL;
	if (!a->length || !IS_ALIGNED(a->offset, PAGE_SIZE) ||
	    !IS_ALIGNED(a->length, PAGE_SIZE) || a->offset >= dev->shm_len ||
	    a->length > dev->shm_len - a->offset)
		return -EINVAL;
	if (!IS_ALIGNED(a->wr_offset, PAGE_SIZE) ||
	    !IS_ALIGNED(a->wr_length, PAGE_SIZE) ||
	    a->wr_offset > a->length ||
	    a->wr_length > a->length - a->wr_offset)
		return -EINVAL;
	if (a->ring_peer != IVSOCK_WIN_NO_RING &&
	    a->ring_peer > IVSOCK_WIN_MAX_PEER)
		return -EINVAL;
	return 0;
}

/* IVSOCK_IOC_WINDOW on the device file @f. */
long ivsock_win_cut(struct ivsock_file *f,
		    struct ivsock_dev_window __user *uarg)
{
	struct ivsock_dev *dev = f->dev;
	struct ivsock_dev_window a;
	struct ivsock_win *w;
	struct file *file;
	int fd, ret;

	if (copy_from_user(&a, uarg, sizeof(a)))
		return -EFAULT;
	ret = ivsock_win_check(dev, &a);
	if (ret)
		return ret;
	/* A window may not map or write what its cutter could not. */
	if (!(f->filp->f_mode & FMODE_READ) ||
	    (a.wr_length && !(f->filp->f_mode & FMODE_WRITE)))
		return -EPERM;

	w = kzalloc(sizeof(*w), GFP_KERNEL_ACCOUNT);
	if (!w)
		return -ENOMEM;
	INIT_LIST_HEAD(&w->node);
	kref_get(&dev->kref);
	w->dev = dev;
	w->inode = file_inode(f->filp);
	ihold(w->inode);
	w->mapping = f->filp->f_mapping;
	w->offset = a.offset;
	w->length = a.length;
	w->wr_offset = a.wr_offset;
	w->wr_length = a.wr_length;
	w->ring_peer = a.ring_peer;

	fd = get_unused_fd_flags(O_CLOEXEC);
	if (fd < 0) {
		ivsock_win_free(w);
		return fd;
	}
	file = anon_inode_getfile("[ivsock-window]", &ivsock_win_fops, w,
				  O_RDWR);
	if (IS_ERR(file)) {
		put_unused_fd(fd);
		ivsock_win_free(w);
		return PTR_ERR(file);
	}
	/* From here on ivsock_win_release() owns @w. Nothing has seen the
	 * file yet, so its mapping can still change.
	 */
	file->f_mapping = w->mapping;

	down_read(&dev->lock);
	if (dev->dead) {
		ret = -ENODEV;
	} else {
		/* Listed before unplug can set dead: unplug will find it. */
		mutex_lock(&dev->win_lock);
		list_add_tail(&w->node, &dev->windows);
		mutex_unlock(&dev->win_lock);
	}
	up_read(&dev->lock);

	if (!ret && put_user(fd, &uarg->fd))
		ret = -EFAULT;
	if (ret) {
		put_unused_fd(fd);
		fput(file);
		return ret;
	}
	fd_install(fd, file);
	dev_dbg(&dev->pdev->dev,
		"window [%#llx, +%#llx) wr [+%#llx, +%#llx) peer %#x: fd %d\n",
		a.offset, a.length, a.wr_offset, a.wr_length, a.ring_peer, fd);
	return 0;
}

/* Zap every mapping of @w, in every process. */
static void ivsock_win_zap(struct ivsock_win *w)
{
	unmap_mapping_range(w->mapping, IVSOCK_WIN_MAP_BASE + w->offset,
			    w->length, 1);
}

static bool ivsock_win_overlaps(const struct ivsock_win *w,
				const struct ivsock_dev_range *r)
{
	return w->offset < r->offset + r->length &&
	       r->offset < w->offset + w->length;
}

/* IVSOCK_IOC_WIN_BUSY and IVSOCK_IOC_WIN_REVOKE on the device. */
long ivsock_win_range(struct ivsock_dev *dev, unsigned int cmd,
		      struct ivsock_dev_range __user *uarg)
{
	struct ivsock_dev_range r;
	struct ivsock_win *w;
	u64 n = 0;

	if (copy_from_user(&r, uarg, sizeof(r)))
		return -EFAULT;
	if (!r.length || r.offset >= dev->shm_len ||
	    r.length > dev->shm_len - r.offset)
		return -EINVAL;

	if (cmd == IVSOCK_IOC_WIN_BUSY) {
		down_read(&dev->lock);
		if (dev->dead) {
			up_read(&dev->lock);
			return -ENODEV;
		}
		mutex_lock(&dev->win_lock);
		list_for_each_entry(w, &dev->windows, node)
			n += ivsock_win_overlaps(w, &r);
		mutex_unlock(&dev->win_lock);
		up_read(&dev->lock);
	} else {
		/*
		 * Mark under the write side (no fault or mmap in flight),
		 * then zap: a fault that ran before left PTEs in a linked
		 * vma, which the zap reaches; one that runs after sees
		 * @revoked. win_lock keeps the windows alive meanwhile.
		 */
		down_write(&dev->lock);
		if (dev->dead) {
			up_write(&dev->lock);
			return -ENODEV;
		}
		mutex_lock(&dev->win_lock);
		list_for_each_entry(w, &dev->windows, node) {
			if (ivsock_win_overlaps(w, &r) && !w->revoked) {
				w->revoked = true;
				n++;
			}
		}
		up_write(&dev->lock);
		list_for_each_entry(w, &dev->windows, node) {
			if (ivsock_win_overlaps(w, &r))
				ivsock_win_zap(w);
		}
		mutex_unlock(&dev->win_lock);
		dev_dbg(&dev->pdev->dev, "revoked %llu window(s) on [%#llx, +%#llx)\n",
			n, r.offset, r.length);
	}
	if (put_user(n, &uarg->count))
		return -EFAULT;
	return 0;
}

/* Unplug, after dev->dead is set: zap every window's mappings. */
void ivsock_win_unplug(struct ivsock_dev *dev)
{
	struct ivsock_win *w;

	mutex_lock(&dev->win_lock);
	list_for_each_entry(w, &dev->windows, node)
		ivsock_win_zap(w);
	mutex_unlock(&dev->win_lock);
}
