// SPDX-License-Identifier: GPL-2.0
/*
 * ivsock.ko, PCI half: binds QEMU's ivshmem-doorbell device (1af4:1110),
 * maps its BARs, takes every MSI-X vector it offers (INTx as a fallback for
 * vector 0) and forwards each interrupt to the eventfds bound to it.
 */
#include <linux/eventfd.h>
#include <linux/idr.h>
#include <linux/interrupt.h>
#include <linux/io.h>
#include <linux/module.h>
#include <linux/slab.h>

#include "ivsock.h"

#define PCI_VENDOR_ID_IVSHMEM 0x1af4
#define PCI_DEVICE_ID_IVSHMEM 0x1110

static DEFINE_IDA(ivsock_ida);

static void ivsock_vec_signal(struct ivsock_vec *vec)
{
	struct ivsock_dev *dev = vec->dev;
	struct ivsock_binding *b;

	spin_lock(&dev->bind_lock);
	list_for_each_entry(b, &vec->bindings, node)
		ivsock_eventfd_signal(b->ctx);
	spin_unlock(&dev->bind_lock);
}

static irqreturn_t ivsock_msix_irq(int irq, void *data)
{
	struct ivsock_vec *vec = data;

	IVSOCK_WARN_ON(vec->index >= vec->dev->nvec);
	ivsock_vec_signal(vec);
	return IRQ_HANDLED;
}

/* INTx may be shared: IntrStatus says whether it was us; reading clears it. */
static irqreturn_t ivsock_intx_irq(int irq, void *data)
{
	struct ivsock_vec *vec = data;
	u32 status = readl(vec->dev->regs + IVSOCK_REG_INTRSTATUS);

	if (!status || status == ~0U)
		return IRQ_NONE;
	ivsock_vec_signal(vec);
	return IRQ_HANDLED;
}

static void ivsock_dev_release(struct kref *kref)
{
	struct ivsock_dev *dev = container_of(kref, struct ivsock_dev, kref);

	IVSOCK_WARN_ON(!list_empty(&dev->files));
	IVSOCK_WARN_ON(!list_empty(&dev->windows));
	IVSOCK_WARN_ON(!dev->dead);
	kfree(dev->vecs);
	kfree(dev);
}

void ivsock_dev_put(struct ivsock_dev *dev)
{
	kref_put(&dev->kref, ivsock_dev_release);
}

/*
 * BAR0 is 256 bytes; a user mapping covers a whole page. Like VFIO, claim
 * the rest of that page so no other device's registers can live there.
 */
static void ivsock_regs_pad_reserve(struct ivsock_dev *dev)
{
	struct resource *res = &dev->pdev->resource[IVSOCK_BAR_REGS];
	struct resource *pad;

	if (res->start & ~PAGE_MASK)
		return;
	if (resource_size(res) < PAGE_SIZE) {
		pad = kzalloc(sizeof(*pad), GFP_KERNEL);
		if (!pad)
			return;
		pad->name = "ivsock sub-page reserved";
		pad->start = res->end + 1;
		pad->end = res->start + PAGE_SIZE - 1;
		pad->flags = res->flags;
		if (!res->parent || request_resource(res->parent, pad)) {
			kfree(pad);
			return;
		}
		dev->regs_pad = pad;
	}
	dev->flags |= IVSOCK_DEV_F_REGS_MAP;
}

static void ivsock_regs_pad_release(struct ivsock_dev *dev)
{
	if (!dev->regs_pad)
		return;
	release_resource(dev->regs_pad);
	kfree(dev->regs_pad);
	dev->regs_pad = NULL;
}

static int ivsock_irqs_setup(struct ivsock_dev *dev)
{
	struct pci_dev *pdev = dev->pdev;
	int nmsix = pci_msix_vec_count(pdev);
	int nvec = -ENODEV;
	irq_handler_t handler = ivsock_msix_irq;
	unsigned long irqflags = 0;
	int i, err;

	/* All or nothing: peers address vectors by number. */
	if (nmsix > 0)
		nvec = pci_alloc_irq_vectors(pdev, nmsix, nmsix, PCI_IRQ_MSIX);
	if (nvec < 0) {
		nvec = pci_alloc_irq_vectors(pdev, 1, 1, PCI_IRQ_INTX);
		if (nvec < 0)
			return nvec;
		handler = ivsock_intx_irq;
		irqflags = IRQF_SHARED;
		/* QEMU >= 2.6 has MSI-X on every ivshmem-doorbell and drops
		 * doorbells while it is disabled; INTx is for other devices.
		 */
		dev_warn(&pdev->dev,
			 "MSI-X unavailable, using INTx: vector 0 only, and QEMU's ivshmem-doorbell may deliver nothing\n");
	} else {
		dev->flags |= IVSOCK_DEV_F_MSIX;
	}

	dev->vecs = kcalloc(nvec, sizeof(*dev->vecs), GFP_KERNEL);
	if (!dev->vecs) {
		err = -ENOMEM;
		goto err_free_vectors;
	}
	for (i = 0; i < nvec; i++) {
		dev->vecs[i].dev = dev;
		dev->vecs[i].index = i;
		INIT_LIST_HEAD(&dev->vecs[i].bindings);
	}
	dev->nvec = nvec;

	for (i = 0; i < nvec; i++) {
		err = request_irq(pci_irq_vector(pdev, i), handler, irqflags,
				  dev->name, &dev->vecs[i]);
		if (err)
			goto err_free_irqs;
	}
	if (!(dev->flags & IVSOCK_DEV_F_MSIX))
		writel(1, dev->regs + IVSOCK_REG_INTRMASK);
	return 0;

err_free_irqs:
	while (--i >= 0)
		free_irq(pci_irq_vector(pdev, i), &dev->vecs[i]);
	/* dev->vecs is freed with the device */
err_free_vectors:
	pci_free_irq_vectors(pdev);
	return err;
}

static void ivsock_irqs_teardown(struct ivsock_dev *dev)
{
	u32 i;

	if (!(dev->flags & IVSOCK_DEV_F_MSIX))
		writel(0, dev->regs + IVSOCK_REG_INTRMASK);
	/* free_irq() waits for running handlers: none runs after this. */
	for (i = 0; i < dev->nvec; i++)
		free_irq(pci_irq_vector(dev->pdev, i), &dev->vecs[i]);
	pci_free_irq_vectors(dev->pdev);
}

static int ivsock_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct ivsock_dev *dev;
	int err;

	dev = kzalloc(sizeof(*dev), GFP_KERNEL);
	if (!dev)
		return -ENOMEM;
	kref_init(&dev->kref);
	init_rwsem(&dev->lock);
	spin_lock_init(&dev->bind_lock);
	mutex_init(&dev->files_lock);
	INIT_LIST_HEAD(&dev->files);
	mutex_init(&dev->win_lock);
	INIT_LIST_HEAD(&dev->windows);
	init_waitqueue_head(&dev->unplug_wq);
	dev->pdev = pdev;

	err = ida_alloc(&ivsock_ida, GFP_KERNEL);
	if (err < 0)
		goto err_free_dev;
	dev->index = err;
	snprintf(dev->name, sizeof(dev->name), IVSOCK_NAME "%d", dev->index);

	err = pci_enable_device(pdev);
	if (err)
		goto err_free_index;
	err = pci_request_regions(pdev, IVSOCK_NAME);
	if (err)
		goto err_disable_device;

	if (!(pci_resource_flags(pdev, IVSOCK_BAR_REGS) & IORESOURCE_MEM) ||
	    pci_resource_len(pdev, IVSOCK_BAR_REGS) < 16 ||
	    !(pci_resource_flags(pdev, IVSOCK_BAR_SHM) & IORESOURCE_MEM) ||
	    !pci_resource_len(pdev, IVSOCK_BAR_SHM)) {
		dev_err(&pdev->dev, "unexpected BAR layout\n");
		err = -ENODEV;
		goto err_release_regions;
	}
	dev->regs_start = pci_resource_start(pdev, IVSOCK_BAR_REGS);
	dev->shm_start = pci_resource_start(pdev, IVSOCK_BAR_SHM);
	dev->shm_len = pci_resource_len(pdev, IVSOCK_BAR_SHM);

	dev->regs = pci_iomap(pdev, IVSOCK_BAR_REGS, 0);
	if (!dev->regs) {
		err = -ENOMEM;
		goto err_release_regions;
	}
	/*
	 * BAR2 is host RAM behind a BAR. Mapping it write-back here records
	 * WB in the PAT memtype tree, so user mappings inserted later at
	 * fault time get WB too (they inherit the reserved type).
	 */
	dev->shm = memremap(dev->shm_start, dev->shm_len, MEMREMAP_WB);
	if (!dev->shm) {
		err = -ENOMEM;
		goto err_iounmap_regs;
	}
	ivsock_regs_pad_reserve(dev);
	dev->peer_id = readl(dev->regs + IVSOCK_DEV_REG_IVPOSITION);

	/* MSI-X messages are DMA writes: the device must be bus master. */
	pci_set_master(pdev);
	err = ivsock_irqs_setup(dev);
	if (err) {
		dev_err(&pdev->dev, "no usable interrupts: %d\n", err);
		goto err_release_pad;
	}

	pci_set_drvdata(pdev, dev);
	err = ivsock_cdev_register(dev);
	if (err)
		goto err_teardown_irqs;

	dev_info(&pdev->dev,
		 "/dev/%s: peer %u, region %llu bytes, %u %s vector(s)%s\n",
		 dev->name, dev->peer_id, (unsigned long long)dev->shm_len,
		 dev->nvec, dev->flags & IVSOCK_DEV_F_MSIX ? "MSI-X" : "INTx",
		 dev->flags & IVSOCK_DEV_F_REGS_MAP ? ", doorbell mmap" : "");
	return 0;

err_teardown_irqs:
	pci_set_drvdata(pdev, NULL);
	ivsock_irqs_teardown(dev);
err_release_pad:
	pci_clear_master(pdev);
	ivsock_regs_pad_release(dev);
	memunmap(dev->shm);
err_iounmap_regs:
	pci_iounmap(pdev, dev->regs);
err_release_regions:
	pci_release_regions(pdev);
err_disable_device:
	pci_disable_device(pdev);
err_free_index:
	ida_free(&ivsock_ida, dev->index);
err_free_dev:
	dev->dead = true;
	ivsock_dev_put(dev);
	return err;
}

/*
 * Hot-unplug or rmmod. Open files may outlive this: they are poisoned
 * (ioctl -ENODEV, poll HUP, mappings zapped so later accesses SIGBUS) and
 * keep only the memory of struct ivsock_dev alive, never the BARs.
 */
static void ivsock_remove(struct pci_dev *pdev)
{
	struct ivsock_dev *dev = pci_get_drvdata(pdev);

	ivsock_cdev_unplug(dev);
	ivsock_irqs_teardown(dev);
	ivsock_bindings_signal_all(dev);
	ivsock_cdev_hangup(dev);

	pci_clear_master(pdev);
	ivsock_regs_pad_release(dev);
	memunmap(dev->shm);
	pci_iounmap(pdev, dev->regs);
	pci_release_regions(pdev);
	pci_disable_device(pdev);
	pci_set_drvdata(pdev, NULL);
	ida_free(&ivsock_ida, dev->index);
	dev_info(&pdev->dev, "/dev/%s removed\n", dev->name);
	ivsock_dev_put(dev);
}

static const struct pci_device_id ivsock_ids[] = {
	{ PCI_DEVICE(PCI_VENDOR_ID_IVSHMEM, PCI_DEVICE_ID_IVSHMEM) },
	{ }
};
MODULE_DEVICE_TABLE(pci, ivsock_ids);

static struct pci_driver ivsock_driver = {
	.name = IVSOCK_NAME,
	.id_table = ivsock_ids,
	.probe = ivsock_probe,
	.remove = ivsock_remove,
};
module_pci_driver(ivsock_driver);

MODULE_DESCRIPTION("ivsock: QEMU ivshmem-doorbell device for inter-VM sockets");
MODULE_LICENSE("GPL");
