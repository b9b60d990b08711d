// SPDX-License-Identifier: MIT
/* PCI backend: the ivshmem-doorbell device inside a real VM, through the
 * guest driver's /dev/ivsockN (ivsock_dev.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "ivsock/ivsock_dev.h"
#include "backend.h"
#include "ids.h"
#include "log.h"

struct pci {
	char *path;
	int dev_fd;   /* the agent's own open of the device */
};

/* A new eventfd bound to vector on dev_fd. @return fd or -errno. */
static int bind_eventfd(int dev_fd, uint32_t vector)
{
	struct ivsock_dev_bind bind = { .vector = vector };
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

	if (efd < 0)
		return -errno;
	bind.eventfd = efd;
	if (ioctl(dev_fd, IVSOCK_IOC_BIND, &bind) < 0) {
		int e = -errno;

		close(efd);
		return e;
	}
	return efd;
}

static void pci_close(struct agent_backend *b)
{
	struct pci *p = b->priv;

	ivsock_doorbell_free(b->db); /* closes its dup of dev_fd and the eventfd */
	b->db = NULL;
	if (b->base)
		munmap(b->base, b->size);
	b->base = NULL;
	if (p) {
		if (p->dev_fd >= 0)
			close(p->dev_fd);
		free(p->path);
		free(p);
	}
	b->priv = NULL;
}

static int pci_open(struct agent_backend *b, const char *path)
{
	struct ivsock_dev_info info;
	struct pci *p;
	int rc, efd, dfd;

	p = calloc(1, sizeof(*p));
	if (!p || !(p->path = strdup(path))) {
		free(p);
		return -ENOMEM;
	}
	b->priv = p;
	b->ctl_fd = -1;
	p->dev_fd = open(path, O_RDWR | O_CLOEXEC);
	if (p->dev_fd < 0) {
		rc = -errno;
		log_err("cannot open %s: %s (is ivsock.ko loaded and the "
			"ivshmem-doorbell device present?)", path, strerror(-rc));
		goto err;
	}
	if (ioctl(p->dev_fd, IVSOCK_IOC_INFO, &info) < 0) {
		rc = -errno;
		log_err("%s: IVSOCK_IOC_INFO: %s", path, strerror(-rc));
		goto err;
	}
	if (info.api_version != IVSOCK_DEV_API_VERSION) {
		log_err("%s speaks driver API %u, we speak %u", path, info.api_version,
			IVSOCK_DEV_API_VERSION);
		rc = -EPROTONOSUPPORT;
		goto err;
	}
	if (info.region_size == 0 || info.region_size > SIZE_MAX) {
		rc = -EINVAL;
		goto err;
	}
	b->peer_id = info.peer_id;
	b->vectors = info.vectors ? info.vectors : 1;
	if (!(info.flags & IVSOCK_DEV_F_MSIX))
		b->vectors = 1;
	if (b->vectors > AGENT_VECTORS_MAX)
		b->vectors = AGENT_VECTORS_MAX;
	b->size = (size_t)info.region_size;
	b->base = mmap(NULL, b->size, PROT_READ | PROT_WRITE, MAP_SHARED, p->dev_fd, 0);
	if (b->base == MAP_FAILED) {
		b->base = NULL;
		rc = -errno;
		log_err("%s: mmap of %zu bytes: %s", path, b->size, strerror(-rc));
		goto err;
	}
	rc = agent_backend_attach(b, 5000);
	if (rc < 0)
		goto err;
	efd = bind_eventfd(p->dev_fd, 0);
	if (efd < 0) {
		rc = efd;
		log_err("%s: bind vector 0: %s", path, strerror(-rc));
		goto err;
	}
	dfd = fcntl(p->dev_fd, F_DUPFD_CLOEXEC, 0);
	b->db = dfd < 0 ? NULL : ivsock_devdb_new(dfd, efd, NULL);
	if (!b->db) {
		if (dfd >= 0)
			close(dfd);
		close(efd);
		rc = -ENOMEM;
		goto err;
	}
	/* The device fd reports POLLHUP once the device is gone (unplug). */
	b->ctl_fd = p->dev_fd;
	log_info("pci backend: %s, peer %u, %u vectors%s", path, b->peer_id, b->vectors,
		 (info.flags & IVSOCK_DEV_F_MSIX) ? " (MSI-X)" : " (INTx)");
	return 0;
err:
	pci_close(b);
	return rc;
}

/* Only called when the device fd polls ready: that is POLLHUP, the device
 * was unplugged or unbound; the region mapping is gone with it. */
static int pci_handle_ctl(struct agent_backend *b)
{
	struct pollfd p = { .fd = b->ctl_fd, .events = POLLIN };

	if (poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR))) {
		b->ctl_fd = -1;
		return -ENODEV;
	}
	return 0;
}

static int cut_window(int dev_fd, uint64_t off, uint64_t len, uint64_t wr_off,
		      uint64_t wr_len, uint32_t ring_peer)
{
	struct ivsock_dev_window w = {
		.offset = off, .length = len, .wr_offset = wr_off, .wr_length = wr_len,
		.ring_peer = ring_peer, .fd = -1,
	};

	if (ioctl(dev_fd, IVSOCK_IOC_WINDOW, &w) < 0)
		return -errno;
	return w.fd;
}

static int pci_client_fds(struct agent_backend *b, uint32_t vector, uint64_t tables_size,
			  int fds[2], int *keep)
{
	struct pci *p = b->priv;
	int dfd;

	if (vector >= b->vectors)
		return -EINVAL;
	/* A new open per client, kept by the agent: its eventfd binding
	 * dies with it. The client itself never holds the device. */
	dfd = open(p->path, O_RDWR | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	fds[1] = bind_eventfd(dfd, vector);
	if (fds[1] < 0) {
		int e = fds[1];

		close(dfd);
		return e;
	}
	fds[0] = cut_window(p->dev_fd, 0, tables_size, 0, 0, IVSOCK_WIN_NO_RING);
	if (fds[0] < 0) {
		int e = fds[0];

		close(fds[1]);
		close(dfd);
		return e;
	}
	*keep = dfd;
	return 0;
}

static int pci_window(struct agent_backend *b, uint64_t off, uint64_t len, uint64_t wr_off,
		      uint64_t wr_len, uint32_t ring_peer, int *fd)
{
	struct pci *p = b->priv;

	*fd = cut_window(p->dev_fd, off, len, wr_off, wr_len, ring_peer);
	return *fd < 0 ? *fd : 0;
}

static void pci_revoke(struct agent_backend *b, uint64_t off, uint64_t len)
{
	struct pci *p = b->priv;
	struct ivsock_dev_range r = { .offset = off, .length = len };

	if (ioctl(p->dev_fd, IVSOCK_IOC_WIN_REVOKE, &r) < 0)
		log_rl(LOG_WARNING, "revoking windows onto [%llu, +%llu): %s",
		       (unsigned long long)off, (unsigned long long)len, strerror(errno));
}

static int pci_peer_fd(struct agent_backend *b, uint32_t peer, uint32_t vector)
{
	(void)b, (void)peer, (void)vector;
	return -EOPNOTSUPP; /* clients ring through their own device fd */
}

static int pci_rescan(struct agent_backend *b)
{
	(void)b;
	return 0; /* the device routes doorbells; nothing cached here */
}

const struct agent_backend_ops agent_backend_pci_ops = {
	.name = "pci",
	.kind = IVSOCK_BACKEND_PCI,
	.open = pci_open,
	.handle_ctl = pci_handle_ctl,
	.client_fds = pci_client_fds,
	.window = pci_window,
	.revoke = pci_revoke,
	.peer_fd = pci_peer_fd,
	.rescan = pci_rescan,
	.close = pci_close,
};
