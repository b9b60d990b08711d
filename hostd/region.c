// SPDX-License-Identifier: MIT
/*
 * The shared region of a domain: a sealed memfd by default, or a file on
 * tmpfs (/dev/shm) or hugetlbfs. A file that already holds an ivsock region
 * of the same geometry is adopted, never re-formatted; a file locked by a
 * running ivsockd is refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <linux/magic.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include "ivsockd.h"
#include "log.h"

static int open_memfd(struct domain *d, char *err, size_t errlen)
{
	char name[96];
	int fd;

	snprintf(name, sizeof(name), "ivsock:%s", d->conf.name);
	fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0) {
		snprintf(err, errlen, "memfd_create: %s", strerror(errno));
		return -errno;
	}
	if (ftruncate(fd, (off_t)d->conf.region_size) < 0) {
		int e = errno;

		snprintf(err, errlen, "memfd of %llu bytes: %s",
			 (unsigned long long)d->conf.region_size, strerror(e));
		close(fd);
		return -e;
	}
	/* Nobody (QEMU included) may change the size under the mappings. */
	fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
	return fd;
}

/* Open/lock a file backing; *fresh says whether it must be formatted. */
static int open_file(struct domain *d, bool *fresh, char *err, size_t errlen)
{
	const char *path = d->conf.backing;
	struct statfs sfs;
	struct stat st;
	int fd, e;

	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "backing %s: %s", path, strerror(errno));
		return -errno;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		e = errno;
		snprintf(err, errlen, "backing %s is in use by another ivsockd (%s)",
			 path, strerror(e));
		goto err;
	}
	if (fstatfs(fd, &sfs) < 0 || fstat(fd, &st) < 0) {
		e = errno;
		snprintf(err, errlen, "backing %s: %s", path, strerror(e));
		goto err;
	}
	if (sfs.f_type != TMPFS_MAGIC && sfs.f_type != HUGETLBFS_MAGIC) {
		e = EINVAL;
		snprintf(err, errlen, "backing %s is not on tmpfs (/dev/shm) or hugetlbfs", path);
		goto err;
	}
	if (st.st_size == 0) {
		*fresh = true;
		if (ftruncate(fd, (off_t)d->conf.region_size) < 0) {
			e = errno;
			snprintf(err, errlen, "backing %s: cannot size to %llu: %s", path,
				 (unsigned long long)d->conf.region_size, strerror(e));
			goto err;
		}
	} else if ((uint64_t)st.st_size != d->conf.region_size) {
		e = EEXIST;
		snprintf(err, errlen, "backing %s holds %lld bytes but region_size is %llu: "
			 "refusing to re-format a region that may be in use (remove the "
			 "file to start afresh)", path, (long long)st.st_size,
			 (unsigned long long)d->conf.region_size);
		goto err;
	} else {
		*fresh = false;
	}
	return fd;
err:
	close(fd);
	return -e;
}

/* Is the whole superblock page zero (a file nobody formatted yet)? */
static bool sb_blank(const void *base)
{
	const uint8_t *p = base;
	size_t i;

	for (i = 0; i < sizeof(struct ivsock_superblock); i++)
		if (p[i])
			return false;
	return true;
}

int region_open(struct domain *d, char *err, size_t errlen)
{
	struct ivsock_region_params p;
	bool fresh = true;
	int fd, rc;

	d->file_backed = strcmp(d->conf.backing, "memfd") != 0;
	fd = d->file_backed ? open_file(d, &fresh, err, errlen) : open_memfd(d, err, errlen);
	if (fd < 0)
		return fd;
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

	if (!fresh && !sb_blank(d->base)) {
		rc = ivsock_region_attach(&d->rg, d->base, d->conf.region_size);
		if (rc < 0) {
			snprintf(err, errlen, "backing %s: %s; refusing to re-format it "
				 "(remove the file to start afresh)", d->conf.backing,
				 ivsock_region_strerror(rc));
			goto err;
		}
		if (d->rg.vm_cap != d->conf.max_vms || d->rg.ring_size != d->conf.ring_size) {
			rc = -EEXIST;
			snprintf(err, errlen, "backing %s was formatted with max_vms=%u "
				 "ring_size=%u, config says %u/%u: refusing to re-format "
				 "(remove the file to start afresh)", d->conf.backing,
				 d->rg.vm_cap, d->rg.ring_size, d->conf.max_vms, d->conf.ring_size);
			goto err;
		}
		d->self_id = d->rg.sb->daemon_peer_id;
		if (d->self_id > 65535 || peer_id_reserve(&d->ids, d->self_id) < 0) {
			rc = -EPROTO;
			snprintf(err, errlen, "backing %s: bad daemon peer id", d->conf.backing);
			goto err;
		}
		d->adopted = true;
		ivsock_store_release(&d->rg.sb->daemon_epoch,
				     ivsock_load_relaxed(&d->rg.sb->daemon_epoch) + 1);
		ivsock_store_release(&d->rg.sb->daemon_state, IVSOCK_DAEMON_UP);
		log_notice("domain %s: adopted the region in %s (format %016llx, epoch %u)",
			   d->conf.name, d->conf.backing,
			   (unsigned long long)d->rg.format_id,
			   ivsock_load_relaxed(&d->rg.sb->daemon_epoch));
		return 0;
	}

	rc = peer_id_alloc(&d->ids);
	if (rc < 0) {
		snprintf(err, errlen, "no peer id for the daemon");
		goto err;
	}
	d->self_id = (uint32_t)rc;
	ivsock_region_params_default(&p);
	p.vm_cap = d->conf.max_vms;
	p.ring_size = d->conf.ring_size;
	p.daemon_peer_id = d->self_id;
	rc = ivsock_region_format(&d->rg, d->base, d->conf.region_size, &p);
	if (rc < 0) {
		snprintf(err, errlen, "cannot format a %llu-byte region with max_vms=%u "
			 "ring_size=%u: %s (lower max_vms or ring_size, or raise region_size)",
			 (unsigned long long)d->conf.region_size,
			 p.vm_cap, p.ring_size, ivsock_region_strerror(rc));
		goto err;
	}
	ivsock_store_release(&d->rg.sb->daemon_epoch, 1);
	log_info("domain %s: formatted %llu-byte region (%s), %u VMs x %u rings of %u bytes",
		 d->conf.name, (unsigned long long)d->conf.region_size, d->conf.backing,
		 d->rg.vm_cap, d->rg.rings_per_vm, d->rg.ring_size);
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
	if (stopping)
		ivsock_store_release(&d->rg.sb->daemon_state, IVSOCK_DAEMON_STOPPED);
	munmap(d->base, d->conf.region_size);
	d->base = NULL;
	if (d->shm_fd >= 0)
		close(d->shm_fd);
	d->shm_fd = -1;
}
