// SPDX-License-Identifier: MIT
/*
 * In-guest checker for ivsock.ko (/dev/ivsock0), driven by test-driver.sh.
 *   devcheck info     print IVSOCK_IOC_INFO
 *   devcheck pair     INFO, mmap, self-doorbells, ioctl errors, then a
 *                     doorbell ping-pong on every vector with the other
 *                     guest (IVSOCK_ROLE=a|b), met through the region
 *   devcheck unplug   hold a mapping and a bound eventfd, print
 *                     IVSOCK-UNPLUG-READY, poll until the device goes away,
 *                     then check HUP, -ENODEV, SIGBUS on the old mapping
 *   devcheck hammer   ring, rebind, mmap, touch, munmap in a loop until
 *                     the device goes away (races with remove())
 * Parameters come from the environment (the initramfs turns ivsock.KEY=VAL
 * on the kernel command line into IVSOCK_KEY): SIZE, VECTORS, PEER
 * (expected values, optional), HOSTPAT (offset of the host's pattern),
 * SCRATCH (offset of a 4 KiB scratch page, default: the last page),
 * NONCE (run id), DEV (default /dev/ivsock0).
 * Exit 0 when every check passed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <ivsock/ivsock_dev.h>

#define SLOT_MAGIC 0x4b535649u	/* "IVSK" */
#define PAT_LEN 256

/* One per role in the scratch page; each field written by its role only. */
struct slot {
	uint32_t magic;		/* SLOT_MAGIC ^ nonce once valid */
	uint32_t peer_id;
	uint32_t state;		/* 1 = eventfds bound, 2 = done */
	uint32_t pad;
	uint8_t pattern[PAT_LEN];
};

static int failures;
static const char *devpath = "/dev/ivsock0";

#define CHECK(cond, ...) do {						\
	if (cond) {							\
		printf("ok   ");					\
	} else {							\
		printf("FAIL ");					\
		failures++;						\
	}								\
	printf(__VA_ARGS__);						\
	printf("\n");							\
	fflush(stdout);							\
} while (0)

static uint64_t env_u64(const char *name, uint64_t def)
{
	const char *v = getenv(name);

	return v && *v ? strtoull(v, NULL, 0) : def;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int open_dev(void)
{
	int fd = open(devpath, O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		perror(devpath);
		exit(1);
	}
	return fd;
}

static int get_info(int fd, struct ivsock_dev_info *info)
{
	memset(info, 0, sizeof(*info));
	return ioctl(fd, IVSOCK_IOC_INFO, info);
}

static int ring(int fd, uint16_t peer, uint16_t vector)
{
	struct ivsock_dev_ring r = { .peer = peer, .vector = vector };

	return ioctl(fd, IVSOCK_IOC_RING, &r);
}

static int bind_efd(int fd, int efd, uint32_t vector)
{
	struct ivsock_dev_bind b = { .eventfd = efd, .vector = vector };

	return ioctl(fd, IVSOCK_IOC_BIND, &b);
}

/* Wait up to @ms for @efd to fire; return its count or 0 on timeout. */
static uint64_t efd_wait(int efd, int ms)
{
	struct pollfd p = { .fd = efd, .events = POLLIN };
	uint64_t v = 0;

	if (poll(&p, 1, ms) != 1)
		return 0;
	if (read(efd, &v, sizeof(v)) != sizeof(v))
		return 0;
	return v;
}

static void pattern_fill(uint8_t *p, size_t n, uint32_t seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = (uint8_t)(i * 7 + seed * 13 + 1);
}

static int pattern_ok(const volatile uint8_t *p, size_t n, uint32_t seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] != (uint8_t)(i * 7 + seed * 13 + 1))
			return 0;
	return 1;
}

static int cmd_info(void)
{
	struct ivsock_dev_info info;
	int fd = open_dev();

	if (get_info(fd, &info) < 0) {
		perror("IVSOCK_IOC_INFO");
		return 1;
	}
	printf("api %u peer %u size %llu vectors %u flags 0x%x\n",
	       info.api_version, info.peer_id,
	       (unsigned long long)info.region_size, info.vectors, info.flags);
	close(fd);
	return 0;
}

/* Doorbells to ourselves: QEMU routes them to our own vectors. */
static void self_tests(int fd, const struct ivsock_dev_info *info)
{
	int e1 = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int e2 = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int fd2 = open_dev();
	uint32_t v = 0, last = info->vectors - 1;

	CHECK(bind_efd(fd, e1, 0) == 0, "bind vector 0");
	CHECK(ring(fd, info->peer_id, 0) == 0, "self ring vector 0");
	CHECK(efd_wait(e1, 5000) >= 1, "self doorbell fires bound eventfd");

	CHECK(bind_efd(fd, e2, 0) == 0, "rebind vector 0 replaces");
	ring(fd, info->peer_id, 0);
	CHECK(efd_wait(e2, 5000) >= 1, "new eventfd fires");
	CHECK(efd_wait(e1, 500) == 0, "replaced eventfd stays quiet");

	CHECK(ioctl(fd, IVSOCK_IOC_UNBIND, &v) == 0, "unbind vector 0");
	ring(fd, info->peer_id, 0);
	CHECK(efd_wait(e2, 500) == 0, "unbound eventfd stays quiet");
	CHECK(ioctl(fd, IVSOCK_IOC_UNBIND, &v) < 0 && errno == ENOENT,
	      "unbind again: ENOENT");

	/* Two open files on one vector: both fire. */
	CHECK(bind_efd(fd, e1, last) == 0 && bind_efd(fd2, e2, last) == 0,
	      "two files bind vector %u", last);
	ring(fd, info->peer_id, last);
	CHECK(efd_wait(e1, 5000) >= 1 && efd_wait(e2, 5000) >= 1,
	      "both files' eventfds fire");
	close(fd2);
	ring(fd, info->peer_id, last);
	CHECK(efd_wait(e1, 5000) >= 1, "close of one file keeps the other");
	CHECK(efd_wait(e2, 500) == 0, "closed file's binding released");
	v = last;
	CHECK(ioctl(fd, IVSOCK_IOC_UNBIND, &v) == 0, "unbind vector %u", v);
	close(e1);
	close(e2);
}

static void error_tests(int fd, const struct ivsock_dev_info *info)
{
	struct ivsock_dev_ring r = { .peer = 0, .vector = 0, .reserved = 1 };
	uint32_t v = info->vectors;
	int efd = eventfd(0, EFD_CLOEXEC);
	void *p;

	CHECK(ioctl(fd, IVSOCK_IOC_RING, &r) < 0 && errno == EINVAL,
	      "RING reserved!=0: EINVAL");
	CHECK(bind_efd(fd, efd, info->vectors) < 0 && errno == EINVAL,
	      "BIND vector out of range: EINVAL");
	CHECK(bind_efd(fd, 12345, 0) < 0 && errno == EBADF,
	      "BIND bad fd: EBADF");
	CHECK(bind_efd(fd, 0, 0) < 0 && errno == EINVAL,
	      "BIND non-eventfd: EINVAL");
	CHECK(ioctl(fd, IVSOCK_IOC_UNBIND, &v) < 0 && errno == EINVAL,
	      "UNBIND out of range: EINVAL");
	CHECK(ioctl(fd, _IO(IVSOCK_IOC_MAGIC, 0x7f)) < 0 && errno == ENOTTY,
	      "unknown ioctl: ENOTTY");
	CHECK(ioctl(fd, IVSOCK_IOC_INFO, (void *)8) < 0 && errno == EFAULT,
	      "INFO bad pointer: EFAULT");

	p = mmap(NULL, info->region_size + 4096, PROT_READ, MAP_SHARED, fd, 0);
	CHECK(p == MAP_FAILED && errno == EINVAL, "mmap past region: EINVAL");
	p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, info->region_size);
	CHECK(p == MAP_FAILED && errno == EINVAL, "mmap at region end: EINVAL");
	p = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
	CHECK(p == MAP_FAILED && errno == EINVAL, "private mmap: EINVAL");
	if (info->flags & IVSOCK_DEV_F_REGS_MAP) {
		p = mmap(NULL, 8192, PROT_READ, MAP_SHARED, fd,
			 IVSOCK_DEV_MMAP_REGS);
		CHECK(p == MAP_FAILED && errno == EINVAL,
		      "2-page regs mmap: EINVAL");
	}
	close(efd);
}

static volatile uint32_t *regs_map(int fd, const struct ivsock_dev_info *info)
{
	void *p;

	if (!(info->flags & IVSOCK_DEV_F_REGS_MAP))
		return NULL;
	p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
		 IVSOCK_DEV_MMAP_REGS);
	CHECK(p != MAP_FAILED, "mmap doorbell page");
	return p == MAP_FAILED ? NULL : p;
}

static int wait_state(volatile struct slot *s, uint32_t magic, uint32_t st,
		      int secs)
{
	double end = now() + secs;

	while (now() < end) {
		if (__atomic_load_n(&s->magic, __ATOMIC_ACQUIRE) == magic &&
		    __atomic_load_n(&s->state, __ATOMIC_ACQUIRE) >= st)
			return 1;
		usleep(10000);
	}
	return 0;
}

static int cmd_pair(void)
{
	const char *role = getenv("IVSOCK_ROLE");
	int me = role && role[0] == 'b';
	struct ivsock_dev_info info;
	uint64_t want_size = env_u64("IVSOCK_SIZE", 0);
	uint64_t want_vec = env_u64("IVSOCK_VECTORS", 0);
	uint64_t want_peer = env_u64("IVSOCK_PEER", ~0ULL);
	uint64_t hostpat = env_u64("IVSOCK_HOSTPAT", ~0ULL);
	uint32_t magic = SLOT_MAGIC ^ (uint32_t)env_u64("IVSOCK_NONCE", 0);
	uint64_t scratch;
	volatile struct slot *mine, *other;
	volatile uint32_t *regs;
	int fd = open_dev(), efd[64];
	uint32_t v, other_id;
	uint8_t *shm;
	double t0;

	CHECK(get_info(fd, &info) == 0, "INFO");
	CHECK(info.api_version == IVSOCK_DEV_API_VERSION, "api_version %u",
	      info.api_version);
	CHECK(!want_size || info.region_size == want_size,
	      "region_size %llu", (unsigned long long)info.region_size);
	CHECK(!want_vec || info.vectors == want_vec, "vectors %u", info.vectors);
	CHECK(info.flags & IVSOCK_DEV_F_MSIX, "MSI-X in use");
	CHECK(want_peer == ~0ULL || info.peer_id == want_peer, "peer_id %u",
	      info.peer_id);
	printf("info: peer %u size %llu vectors %u flags 0x%x\n", info.peer_id,
	       (unsigned long long)info.region_size, info.vectors, info.flags);
	if (failures || info.vectors == 0 || info.vectors > 64)
		return 1;

	shm = mmap(NULL, info.region_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		   fd, 0);
	CHECK(shm != MAP_FAILED, "mmap region");
	if (shm == MAP_FAILED)
		return 1;
	if (hostpat != ~0ULL)
		CHECK(pattern_ok(shm + hostpat, 4096, 0xff),
		      "host pattern visible at 0x%llx",
		      (unsigned long long)hostpat);
	regs = regs_map(fd, &info);
	if (regs)
		CHECK(regs[IVSOCK_DEV_REG_IVPOSITION / 4] == info.peer_id,
		      "IVPosition through mapped registers");

	self_tests(fd, &info);
	error_tests(fd, &info);

	for (v = 0; v < info.vectors; v++) {
		efd[v] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (bind_efd(fd, efd[v], v) < 0)
			CHECK(0, "bind vector %u", v);
	}

	/* Meet the other guest in the scratch page. */
	scratch = env_u64("IVSOCK_SCRATCH", info.region_size - 4096);
	mine = (volatile struct slot *)(shm + scratch) + me;
	other = (volatile struct slot *)(shm + scratch) + !me;
	pattern_fill((uint8_t *)mine->pattern, PAT_LEN, info.peer_id);
	mine->peer_id = info.peer_id;
	__atomic_store_n(&mine->state, 1, __ATOMIC_RELEASE);
	__atomic_store_n(&mine->magic, magic, __ATOMIC_RELEASE);
	CHECK(wait_state(other, magic, 1, 120), "other guest is up");
	if (failures)
		return 1;
	other_id = other->peer_id;
	CHECK(pattern_ok(other->pattern, PAT_LEN, other_id),
	      "other guest's pattern visible (peer %u)", other_id);

	/* a rings b on vector v, b answers on v; odd rounds via the page. */
	for (v = 0; v < info.vectors; v++) {
		int via_page = regs && (v & 1);
		uint32_t bell = other_id << 16 | v;
		uint64_t n = 0;

		t0 = now();
		if (!me) {
			if (via_page)
				regs[IVSOCK_DEV_REG_DOORBELL / 4] = bell;
			else
				ring(fd, other_id, v);
		}
		n = efd_wait(efd[v], 20000);
		if (me) {
			if (via_page)
				regs[IVSOCK_DEV_REG_DOORBELL / 4] = bell;
			else
				ring(fd, other_id, v);
		}
		CHECK(n >= 1, "vector %u: doorbell %s peer %u (%s, %.1f ms)",
		      v, me ? "from" : "round trip with", other_id,
		      via_page ? "mapped register" : "ioctl",
		      (now() - t0) * 1e3);
	}

	v = 0;
	CHECK(ioctl(fd, IVSOCK_IOC_UNBIND, &v) == 0, "unbind vector 0");
	__atomic_store_n(&mine->state, 2, __ATOMIC_RELEASE);
	CHECK(wait_state(other, magic, 2, 120), "other guest done");
	munmap(shm, info.region_size);
	if (regs)
		munmap((void *)regs, 4096);
	CHECK(close(fd) == 0, "close with eventfds still bound");
	for (v = 0; v < info.vectors; v++)
		close(efd[v]);
	return failures ? 1 : 0;
}

static sigjmp_buf bus_jmp;

static void on_sigbus(int sig)
{
	(void)sig;
	siglongjmp(bus_jmp, 1);
}

static int cmd_unplug(void)
{
	struct ivsock_dev_info info;
	struct sigaction sa;
	int fd = open_dev();
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	struct pollfd p[2];
	volatile uint8_t *shm;
	volatile uint32_t *regs;
	int hup = 0, fired = 0, bus;
	uint64_t cnt;
	double end;

	CHECK(get_info(fd, &info) == 0, "INFO");
	shm = mmap(NULL, info.region_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		   fd, 0);
	CHECK(shm != MAP_FAILED, "mmap region");
	if (shm == MAP_FAILED)
		return 1;
	shm[0] ^= 0;			/* fault it in */
	regs = regs_map(fd, &info);
	CHECK(bind_efd(fd, efd, 0) == 0, "bind vector 0");

	printf("IVSOCK-UNPLUG-READY\n");
	fflush(stdout);

	end = now() + 300;
	while (!hup && now() < end) {
		p[0] = (struct pollfd){ .fd = fd, .events = POLLIN };
		p[1] = (struct pollfd){ .fd = efd, .events = POLLIN };
		if (poll(p, 2, 1000) < 0)
			continue;
		if (p[1].revents & POLLIN &&
		    read(efd, &cnt, sizeof(cnt)) == sizeof(cnt))
			fired = 1;
		if (p[0].revents & POLLHUP)
			hup = 1;
	}
	CHECK(hup, "poll: POLLHUP on the device fd");
	CHECK(p[0].revents & POLLERR, "poll: POLLERR too");
	if (!fired)
		fired = efd_wait(efd, 2000) >= 1;
	CHECK(fired, "bound eventfd signalled on unplug");
	CHECK(get_info(fd, &info) < 0 && errno == ENODEV,
	      "INFO after unplug: ENODEV");
	CHECK(ring(fd, 0, 0) < 0 && errno == ENODEV,
	      "RING after unplug: ENODEV");
	CHECK(mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0) == MAP_FAILED &&
	      errno == ENODEV, "mmap after unplug: ENODEV");

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigbus;
	sigaction(SIGBUS, &sa, NULL);
	bus = 0;
	if (sigsetjmp(bus_jmp, 1) == 0)
		(void)shm[0];
	else
		bus = 1;
	CHECK(bus, "old region mapping: SIGBUS");
	if (regs) {
		bus = 0;
		if (sigsetjmp(bus_jmp, 1) == 0)
			(void)regs[IVSOCK_DEV_REG_IVPOSITION / 4];
		else
			bus = 1;
		CHECK(bus, "old register mapping: SIGBUS");
	}
	CHECK(close(fd) == 0, "close after unplug");
	CHECK(access(devpath, F_OK) < 0, "%s is gone", devpath);
	return failures ? 1 : 0;
}

/* Race remove(): every step may meet the device going away. */
static int cmd_hammer(void)
{
	struct ivsock_dev_info info;
	struct sigaction sa;
	int fd = open_dev();
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	unsigned long iter = 0, bus = 0;
	volatile uint8_t *p;
	uint64_t cnt;
	double end = now() + 300;
	int gone = 0;

	if (get_info(fd, &info) < 0)
		return 1;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigbus;
	sigaction(SIGBUS, &sa, NULL);
	printf("IVSOCK-HAMMER-READY\n");
	while (!gone && now() < end) {
		iter++;
		if (bind_efd(fd, efd, 0) < 0 || ring(fd, info.peer_id, 0) < 0) {
			gone = errno == ENODEV;
			break;
		}
		p = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
			 0);
		if (p == MAP_FAILED) {
			gone = errno == ENODEV;
			break;
		}
		if (sigsetjmp(bus_jmp, 1) == 0)
			p[iter % 65536] = (uint8_t)iter;
		else
			bus++;
		munmap((void *)p, 65536);
		if (read(efd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
			break;
	}
	CHECK(gone, "hammer: %lu iterations, %lu SIGBUS, ended by ENODEV",
	      iter, bus);
	close(efd);
	close(fd);
	return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
	const char *dev = getenv("IVSOCK_DEV");

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (dev && *dev)
		devpath = dev;
	if (argc == 2 && !strcmp(argv[1], "info"))
		return cmd_info();
	if (argc == 2 && !strcmp(argv[1], "pair"))
		return cmd_pair();
	if (argc == 2 && !strcmp(argv[1], "unplug"))
		return cmd_unplug();
	if (argc == 2 && !strcmp(argv[1], "hammer"))
		return cmd_hammer();
	fprintf(stderr, "usage: %s info|pair|unplug|hammer\n", argv[0]);
	return 2;
}
