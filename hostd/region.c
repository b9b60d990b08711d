// SPDX-License-Identifier: MIT
/*
 * The shared region of a domain: always a sealed memfd (MFD_HUGETLB for
 * backing=hugetlb), F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL after sizing,
 * so no client (QEMU, an agent, anything admitted) can change its size under
 * the other mappings. A restarted ivsockd gets the same memfd back from
 * systemd's file descriptor store (fdstore.c) and adopts it, after checking
 * that it is a memfd of the right size carrying those seals.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "ivsockd.h"
#include "log.h"

#define REGION_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

static int open_memfd(struct domain *d, char *err, size_t errlen)
{
	bool huge = !strcmp(d->conf.backing, "hugetlb");
	char name[96];
	int fd, e;

	snprintf(name, sizeof(name), "ivsock:%s", d->conf.name);
	fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING | (huge ? MFD_HUGETLB : 0));
	if (fd < 0) {
		e = errno;
		snprintf(err, errlen, "memfd_create%s: %s", huge ? " (MFD_HUGETLB)" : "",
			 strerror(e));
		return -e;
	}
	if (ftruncate(fd, (off_t)d->conf.region_size) < 0) {
		e = errno;
		snprintf(err, errlen, "%smemfd of %llu bytes: %s", huge ? "hugetlb " : "",
			 (unsigned long long)d->conf.region_size, strerror(e));
		close(fd);
		return -e;
	}
	/* Nobody (QEMU included) may change the size under the mappings. */
	if (fcntl(fd, F_ADD_SEALS, REGION_SEALS) < 0) {
		e = errno;
		snprintf(err, errlen, "sealing the region memfd: %s", strerror(e));
		close(fd);
		return -e;
	}
	return fd;
}

/* Is fd a memfd of the domain's size, sealed against resizing? */
int region_check_fd(int fd, uint64_t size, char *err, size_t errlen)
{
	struct stat st;
	int seals = fcntl(fd, F_GET_SEALS);

	if (seals < 0 || fstat(fd, &st) < 0) {
		snprintf(err, errlen, "not a memfd (%s)", strerror(errno));
		return -EINVAL;
	}
	if ((seals & REGION_SEALS) != REGION_SEALS) {
		snprintf(err, errlen, "memfd seals 0x%x lack shrink/grow/seal", seals);
		return -EPERM;
	}
	if ((uint64_t)st.st_size != size) {
		snprintf(err, errlen, "memfd holds %lld bytes, region_size is %llu",
			 (long long)st.st_size, (unsigned long long)size);
		return -EEXIST;
	}
	return 0;
}

static int adopt(struct domain *d, char *err, size_t errlen)
{
	int rc = ivsock_region_attach(&d->rg, d->base, d->conf.region_size);

	if (rc < 0) {
		snprintf(err, errlen, "stored region: %s", ivsock_region_strerror(rc));
		return rc;
	}
	{
		struct ivsock_region_params p;
		bool same;
		uint32_t k;

		same = conf_region_params(&d->conf, &p) == 0 && d->rg.vm_cap == p.vm_cap &&
		       d->rg.channel_cap == p.channel_cap && d->rg.listener_cap == p.listener_cap &&
		       d->rg.nclasses == p.nclasses && d->rg.default_class == p.default_class;
		for (k = 0; same && k < p.nclasses; k++)
			same = d->rg.class[k].ring_size == p.class_size[k];
		if (!same) {
			snprintf(err, errlen, "stored region was formatted with max_vms=%u, "
				 "max_connections=%u and %u ring classes (default %u bytes), "
				 "the config differs",
				 d->rg.vm_cap, d->rg.channel_cap, d->rg.nclasses,
				 d->rg.class[d->rg.default_class].ring_size);
			return -EEXIST;
		}
	}
	d->self_id = d->rg.sb->daemon_peer_id;
	if (d->self_id > 65535 || peer_id_reserve(&d->ids, d->self_id) < 0) {
		snprintf(err, errlen, "stored region: bad daemon peer id");
		return -EPROTO;
	}
	d->adopted = true;
	ivsock_store_release(&d->rg.sb->daemon_epoch,
			     ivsock_load_relaxed(&d->rg.sb->daemon_epoch) + 1);
	ivsock_store_release(&d->rg.sb->daemon_state, IVSOCK_DAEMON_UP);
	log_notice("domain %s: adopted the region from the fd store (format %016llx, "
		   "epoch %u)", d->conf.name, (unsigned long long)d->rg.format_id,
		   ivsock_load_relaxed(&d->rg.sb->daemon_epoch));
	return 0;
}

int region_open(struct domain *d, int stored_fd, char *err, size_t errlen)
{
	struct ivsock_region_params p;
	int fd = stored_fd, rc;

	if (fd >= 0) {
		char why[160] = "";

		rc = region_check_fd(fd, d->conf.region_size, why, sizeof(why));
		if (rc < 0) {
			/* Keep the old one out of the way: a mismatch is a
			 * configuration change that needs a full stop. */
			snprintf(err, errlen, "stored region fd refused: %s; stop the "
				 "service (which empties its fd store) to start afresh", why);
			close(fd);
			return rc;
		}
	} else {
		fd = open_memfd(d, err, errlen);
		if (fd < 0)
			return fd;
	}
	d->base = mmap(NULL, d->conf.region_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (d->base == MAP_FAILED) {
		rc = -errno;
		snprintf(err, errlen, "mmap of %llu bytes: %s",
			 (unsigned long long)d->conf.region_size, strerror(-rc));
		d->base = NULL;
		close(fd);
		return rc;
	}
	d->shm_fd = fd;
	if (stored_fd >= 0) {
		rc = adopt(d, err, errlen);
		if (rc < 0)
			goto err;
		return 0;
	}

	rc = peer_id_alloc(&d->ids);
	if (rc < 0) {
		snprintf(err, errlen, "no peer id for the daemon");
		goto err;
	}
	d->self_id = (uint32_t)rc;
	if (conf_region_params(&d->conf, &p) < 0) {
		snprintf(err, errlen, "ring_size is not one of ring_classes");
		rc = -EINVAL;
		goto err;
	}
	p.daemon_peer_id = d->self_id;
	rc = ivsock_region_format(&d->rg, d->base, d->conf.region_size, &p);
	if (rc < 0) {
		snprintf(err, errlen, "cannot format a %llu-byte region with max_vms=%u "
			 "ring_size=%u: %s (lower max_vms or ring_size, or raise region_size)",
			 (unsigned long long)d->conf.region_size,
			 p.vm_cap, p.class_size[p.default_class], ivsock_region_strerror(rc));
		goto err;
	}
	ivsock_store_release(&d->rg.sb->daemon_epoch, 1);
	{
		char cls[160] = "";
		size_t n = 0;
		uint32_t k;

		for (k = 0; k < d->rg.nclasses && n < sizeof(cls); k++)
			n += (size_t)snprintf(cls + n, sizeof(cls) - n, "%s%u x %u bytes%s",
					      k ? ", " : "", d->rg.class[k].blocks_per_vm,
					      d->rg.class[k].ring_size,
					      k == d->rg.default_class ? " (default)" : "");
		log_info("domain %s: formatted %llu-byte region (sealed %s), %u VMs x blocks "
			 "of rings: %s", d->conf.name, (unsigned long long)d->conf.region_size,
			 d->conf.backing, d->rg.vm_cap, cls);
	}
	return 0;
err:
	munmap(d->base, d->conf.region_size);
	d->base = NULL;
	close(fd);
	d->shm_fd = -1;
	return rc;
}

void region_close(struct domain *d, bool stopping)
{
	if (!d->base)
		return;
	/* With the region in the fd store the daemon will be back: the
	 * agents see the heartbeat pause and the epoch move, not a stop. */
	if (stopping && !d->stored)
		ivsock_store_release(&d->rg.sb->daemon_state, IVSOCK_DAEMON_STOPPED);
	munmap(d->base, d->conf.region_size);
	d->base = NULL;
	if (d->shm_fd >= 0)
		close(d->shm_fd);
	d->shm_fd = -1;
}
