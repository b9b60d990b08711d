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
 *   devcheck hammer   ring, rebind, mmap, touch, munmap, cut/map/close a
 *                     window in a loop until the device goes away (races
 *                     with remove())
 *   devcheck windows  API 2 windows: WINDOW argument checks, INFO, BUSY,
 *                     then a child dropped to uid/gid 65534 that holds only
 *                     window fds tries everything else (device node, maps
 *                     outside/over the read-only part, private maps,
 *                     mprotect, rings, device ioctls), then REVOKE while
 *                     it is mapped there (SIGBUS, ENODEV), a revoke race, and
 *                     two users (65534, 65533) that cannot reach each other
 *   devcheck winhold  hold a window (fd + mapping, device fd closed), print
 *                     IVSOCK-WINHOLD-READY, wait for /tmp/winhold.stop,
 *                     check the window still works (a refused rmmod)
 * Parameters come from the environment (the initramfs turns ivsock.KEY=VAL
 * on the kernel command line into IVSOCK_KEY): SIZE, VECTORS, PEER
 * (expected values, optional), HOSTPAT (offset of the host's pattern),
 * SCRATCH (offset of a 4 KiB scratch page, default: the last page),
 * NONCE (run id), DEV (default /dev/ivsock0), ROLE (a|b: each role
 * uses its own 16 pages below the scratch page for window tests).
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
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <grp.h>
#include <time.h>
#include <unistd.h>

#include <ivsock/ivsock_dev.h>

#define SLOT_MAGIC 0x4b535649u	/* "IVSK" */
#define PAT_LEN 256
#define PG 4096ULL
#define WIN_AREA_PAGES 16

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

/* Window helpers (API 2). */
static int cut(int fd, uint64_t off, uint64_t len, uint64_t wro, uint64_t wrl,
	       uint32_t peer)
{
	struct ivsock_dev_window w = {
		.offset = off, .length = len, .wr_offset = wro,
		.wr_length = wrl, .ring_peer = peer, .fd = -1,
	};

	if (ioctl(fd, IVSOCK_IOC_WINDOW, &w) < 0)
		return -1;
	return w.fd;
}

static int cut_w(int fd, struct ivsock_dev_window *w)
{
	return ioctl(fd, IVSOCK_IOC_WINDOW, w);
}

/* BUSY or REVOKE: the count, or -1 with errno. */
static long long range_ioc(int fd, unsigned long cmd, uint64_t off,
			   uint64_t len)
{
	struct ivsock_dev_range r = { .offset = off, .length = len };

	if (ioctl(fd, cmd, &r) < 0)
		return -1;
	return (long long)r.count;
}

static long long busy(int fd, uint64_t off, uint64_t len)
{
	return range_ioc(fd, IVSOCK_IOC_WIN_BUSY, off, len);
}

static int win_ring(int wfd, uint32_t vector)
{
	return ioctl(wfd, IVSOCK_IOC_WIN_RING, &vector);
}

/* mmap that must fail with @err. */
static int map_fails(int fd, size_t len, int prot, int flags, uint64_t off,
		     int err)
{
	void *p = mmap(NULL, len, prot, flags, fd, (off_t)off);

	if (p != MAP_FAILED) {
		munmap(p, len);
		return 0;
	}
	return errno == err;
}

/* First page of this role's window area (below the scratch page). */
static uint64_t win_area(const struct ivsock_dev_info *info)
{
	const char *role = getenv("IVSOCK_ROLE");
	int me = role && role[0] == 'b';
	uint64_t scratch = env_u64("IVSOCK_SCRATCH", info->region_size - PG);

	return scratch - (uint64_t)(me + 1) * WIN_AREA_PAGES * PG;
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

/* 1 if reading (or, with @write, writing) *@p raises SIGBUS. */
static int bus_on(volatile uint8_t *p, int write)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigbus;
	sigaction(SIGBUS, &sa, NULL);
	if (sigsetjmp(bus_jmp, 1) == 0) {
		if (write)
			*p = 0x5a;
		else
			(void)*p;
		return 0;
	}
	return 1;
}

/* WINDOW arguments that must fail with @err. */
static void window_arg_tests(int fd, const struct ivsock_dev_info *info,
			     uint64_t base)
{
	static const struct {
		const char *what;
		struct ivsock_dev_window w;
	} bad[] = {
		{ "length 0", { .length = 0 } },
		{ "offset unaligned", { .offset = 1, .length = PG } },
		{ "length unaligned", { .length = PG + 1 } },
		{ "wr_offset unaligned", { .length = 2 * PG, .wr_offset = 1,
					   .wr_length = PG } },
		{ "wr_length unaligned", { .length = 2 * PG,
					   .wr_length = PG / 2 } },
		{ "wr range past the window", { .length = 2 * PG,
						.wr_offset = PG,
						.wr_length = 2 * PG } },
		{ "wr_offset past the window", { .length = 2 * PG,
						 .wr_offset = 3 * PG } },
		{ "flags != 0", { .length = PG, .flags = 1 } },
		{ "reserved != 0", { .length = PG, .reserved = 1 } },
		{ "ring_peer 65536", { .length = PG, .ring_peer = 65536 } },
	};
	struct ivsock_dev_window w;
	size_t i;
	int rofd;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		w = bad[i].w;
		w.offset += base;
		if (bad[i].w.ring_peer == 0)
			w.ring_peer = IVSOCK_WIN_NO_RING;
		CHECK(cut_w(fd, &w) < 0 && errno == EINVAL,
		      "WINDOW %s: EINVAL", bad[i].what);
	}
	w = (struct ivsock_dev_window){ .offset = info->region_size,
		.length = PG, .ring_peer = IVSOCK_WIN_NO_RING };
	CHECK(cut_w(fd, &w) < 0 && errno == EINVAL,
	      "WINDOW at the region's end: EINVAL");
	w.offset = info->region_size - PG;
	w.length = 2 * PG;
	CHECK(cut_w(fd, &w) < 0 && errno == EINVAL,
	      "WINDOW past the region's end: EINVAL");
	w.length = ~(PG - 1);
	CHECK(cut_w(fd, &w) < 0 && errno == EINVAL,
	      "WINDOW with a wrapping length: EINVAL");
	CHECK(ioctl(fd, IVSOCK_IOC_WINDOW, (void *)8) < 0 && errno == EFAULT,
	      "WINDOW bad pointer: EFAULT");
	CHECK(busy(fd, 0, 0) < 0 && errno == EINVAL, "BUSY length 0: EINVAL");
	CHECK(busy(fd, info->region_size - 1, 2) < 0 && errno == EINVAL,
	      "BUSY past the region: EINVAL");
	CHECK(range_ioc(fd, IVSOCK_IOC_WIN_REVOKE, info->region_size, 1) < 0 &&
	      errno == EINVAL, "REVOKE past the region: EINVAL");

	rofd = open(devpath, O_RDONLY | O_CLOEXEC);
	CHECK(rofd >= 0, "open device read-only");
	if (rofd >= 0) {
		int wfd = cut(rofd, base, PG, 0, PG, IVSOCK_WIN_NO_RING);

		CHECK(wfd < 0 && errno == EPERM,
		      "writable WINDOW from a read-only device fd: EPERM");
		wfd = cut(rofd, base, PG, 0, 0, IVSOCK_WIN_NO_RING);
		CHECK(wfd >= 0, "read-only WINDOW from a read-only device fd");
		if (wfd >= 0)
			close(wfd);
		close(rofd);
	}
	rofd = open(devpath, O_WRONLY | O_CLOEXEC);
	CHECK(rofd >= 0, "open device write-only");
	if (rofd >= 0) {
		int wfd = cut(rofd, base, PG, 0, 0, IVSOCK_WIN_NO_RING);

		CHECK(wfd < 0 && errno == EPERM,
		      "WINDOW from a write-only device fd: EPERM");
		if (wfd >= 0)
			close(wfd);
		close(rofd);
	}
}

/* Drop to @uid/@gid (no supplementary groups); 0 on success. */
static int drop_to(uid_t uid, gid_t gid)
{
	if (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0) {
		perror("drop privileges");
		return -1;
	}
	return 0;
}

/* The unprivileged half: holds only @w1 and @w2 (and the pipes). */
static int windows_child(int w1, int w2, uint32_t vector, uint32_t seed,
			 int rd, int wr)
{
	struct ivsock_dev_window wi;
	volatile uint8_t *ro, *rw, *tb;
	char path[64], c = 'r';
	int gp_go[2], gp_ready[2], gstatus, fd;
	pid_t gc;
	uint32_t v;

	failures = 0;			/* ours only, not the parent's */
	if (drop_to(65534, 65534) < 0)
		return 1;
	CHECK(getuid() == 65534 && geteuid() == 65534 && getgid() == 65534,
	      "unpriv: running as uid/gid 65534");

	fd = open(devpath, O_RDWR | O_CLOEXEC);
	CHECK(fd < 0 && errno == EACCES, "unpriv: open %s O_RDWR: EACCES",
	      devpath);
	fd = open(devpath, O_RDONLY | O_CLOEXEC);
	CHECK(fd < 0 && errno == EACCES, "unpriv: open %s O_RDONLY: EACCES",
	      devpath);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", w1);
	fd = open(path, O_RDWR | O_CLOEXEC);
	CHECK(fd < 0, "unpriv: reopen the window through %s fails (%s)", path,
	      strerror(errno));
	if (fd >= 0)
		close(fd);

	CHECK(map_fails(w1, 5 * PG, PROT_READ, MAP_SHARED, 0, EINVAL),
	      "unpriv: mmap longer than the window: EINVAL");
	CHECK(map_fails(w1, PG, PROT_READ, MAP_SHARED, 4 * PG, EINVAL),
	      "unpriv: mmap at the window's end: EINVAL");
	CHECK(map_fails(w1, 2 * PG, PROT_READ, MAP_SHARED, 3 * PG, EINVAL),
	      "unpriv: mmap across the window's end: EINVAL");
	CHECK(map_fails(w1, PG, PROT_READ | PROT_WRITE, MAP_SHARED,
			IVSOCK_DEV_MMAP_REGS, EINVAL),
	      "unpriv: mmap of the doorbell page offset: EINVAL");
	CHECK(map_fails(w1, PG, PROT_READ | PROT_WRITE, MAP_SHARED, 0, EACCES),
	      "unpriv: PROT_WRITE over the read-only part: EACCES");
	CHECK(map_fails(w1, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, 0,
			EACCES),
	      "unpriv: PROT_WRITE over the whole window: EACCES");
	CHECK(map_fails(w1, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, PG,
			EACCES),
	      "unpriv: PROT_WRITE straddling both parts: EACCES");
	CHECK(map_fails(w1, PG, PROT_READ, MAP_PRIVATE, 0, EINVAL),
	      "unpriv: MAP_PRIVATE: EINVAL");
	CHECK(map_fails(w1, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, 2 * PG,
			EINVAL),
	      "unpriv: MAP_PRIVATE over the writable part: EINVAL");
	CHECK(map_fails(w2, PG, PROT_READ | PROT_WRITE, MAP_SHARED, 0, EACCES),
	      "unpriv: PROT_WRITE on a read-only window: EACCES");

	ro = mmap(NULL, 2 * PG, PROT_READ, MAP_SHARED, w1, 0);
	CHECK(ro != MAP_FAILED, "unpriv: mmap the read-only part");
	rw = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, w1, 2 * PG);
	CHECK(rw != MAP_FAILED, "unpriv: mmap the writable part read-write");
	tb = mmap(NULL, 4 * PG, PROT_READ, MAP_SHARED, w2, 0);
	CHECK(tb != MAP_FAILED, "unpriv: mmap the read-only window");
	if (ro == MAP_FAILED || rw == MAP_FAILED || tb == MAP_FAILED)
		return 1;
	CHECK(pattern_ok(ro, 2 * PG, seed),
	      "unpriv: read-only part shows the root's pattern");
	CHECK(mprotect((void *)ro, 2 * PG, PROT_READ | PROT_WRITE) < 0 &&
	      errno == EACCES, "unpriv: mprotect(PROT_WRITE) of it: EACCES");
	CHECK(mprotect((void *)tb, PG, PROT_READ | PROT_WRITE) < 0 &&
	      errno == EACCES,
	      "unpriv: mprotect(PROT_WRITE) of the read-only window: EACCES");
	CHECK(!bus_on(tb + 4 * PG - 1, 0), "unpriv: read-only window readable");
	pattern_fill((uint8_t *)rw, 2 * PG, seed + 1);
	CHECK(mprotect((void *)rw, 2 * PG, PROT_READ) == 0 &&
	      mprotect((void *)rw, 2 * PG, PROT_READ | PROT_WRITE) == 0,
	      "unpriv: writable part: mprotect down and up again");

	v = 65536;
	CHECK(win_ring(w2, 0) < 0 && errno == EPERM,
	      "unpriv: WIN_RING on a window that rings nobody: EPERM");
	CHECK(win_ring(w1, 65536) < 0 && errno == EINVAL,
	      "unpriv: WIN_RING vector 65536: EINVAL");
	CHECK(win_ring(w1, ~0U) < 0 && errno == EINVAL,
	      "unpriv: WIN_RING vector 0xffffffff: EINVAL");
	CHECK(ioctl(w1, IVSOCK_IOC_WIN_RING, (void *)8) < 0 && errno == EFAULT,
	      "unpriv: WIN_RING bad pointer: EFAULT");
	CHECK(ring(w1, 0, 0) < 0 && errno == ENOTTY,
	      "unpriv: IVSOCK_IOC_RING on a window: ENOTTY");
	CHECK(cut(w1, 0, PG, 0, PG, 0) < 0 && errno == ENOTTY,
	      "unpriv: IVSOCK_IOC_WINDOW on a window: ENOTTY");
	CHECK(bind_efd(w1, 0, 0) < 0 && errno == ENOTTY,
	      "unpriv: IVSOCK_IOC_BIND on a window: ENOTTY");
	CHECK(ioctl(w1, IVSOCK_IOC_UNBIND, &v) < 0 && errno == ENOTTY,
	      "unpriv: IVSOCK_IOC_UNBIND on a window: ENOTTY");
	CHECK(busy(w1, 0, PG) < 0 && errno == ENOTTY,
	      "unpriv: IVSOCK_IOC_WIN_BUSY on a window: ENOTTY");
	CHECK(range_ioc(w1, IVSOCK_IOC_WIN_REVOKE, 0, PG) < 0 &&
	      errno == ENOTTY, "unpriv: IVSOCK_IOC_WIN_REVOKE on a window: ENOTTY");
	CHECK(win_ring(w1, vector) == 0, "unpriv: WIN_RING the allowed peer");
	CHECK(read(w1, path, 1) < 0 && write(w1, path, 1) < 0,
	      "unpriv: read(2)/write(2) on a window fail");
	CHECK(mremap((void *)ro, 2 * PG, 3 * PG, MREMAP_MAYMOVE) == MAP_FAILED,
	      "unpriv: mremap cannot grow a window mapping");

	/* A pre-forked worker inherits the mappings; the revoke reaches it. */
	if (pipe(gp_go) < 0 || pipe(gp_ready) < 0)
		return 1;
	gc = fork();
	if (gc == 0) {
		close(gp_go[1]);
		close(gp_ready[0]);
		if (!pattern_ok(rw, 2 * PG, seed + 1) || bus_on(ro, 0))
			_exit(1);
		if (write(gp_ready[1], &c, 1) != 1 || read(gp_go[0], &c, 1) != 1)
			_exit(3);
		_exit(bus_on(rw, 1) && bus_on(ro, 0) ? 0 : 2);
	}
	close(gp_go[0]);
	close(gp_ready[1]);
	CHECK(gc > 0 && read(gp_ready[0], &c, 1) == 1,
	      "unpriv: forked worker reads the inherited mappings");

	/* Root revokes W1 while we have it mapped. */
	if (write(wr, &c, 1) != 1 || read(rd, &c, 1) != 1)
		return 1;
	if (gc > 0) {
		gstatus = 1 << 8;
		if (write(gp_go[1], &c, 1) == 1)
			waitpid(gc, &gstatus, 0);
		CHECK(WIFEXITED(gstatus) && WEXITSTATUS(gstatus) == 0,
		      "unpriv: forked worker's inherited mappings: SIGBUS (exit %d)",
		      WIFEXITED(gstatus) ? WEXITSTATUS(gstatus) : -1);
	}
	CHECK(bus_on(rw, 1), "unpriv: revoked writable mapping: SIGBUS");
	CHECK(bus_on(ro + PG, 0), "unpriv: revoked read-only mapping: SIGBUS");
	CHECK(map_fails(w1, PG, PROT_READ, MAP_SHARED, 0, ENODEV),
	      "unpriv: mmap of a revoked window: ENODEV");
	CHECK(win_ring(w1, vector) < 0 && errno == ENODEV,
	      "unpriv: WIN_RING on a revoked window: ENODEV");
	memset(&wi, 0, sizeof(wi));
	CHECK(ioctl(w1, IVSOCK_IOC_WIN_INFO, &wi) == 0 && wi.fd == -1,
	      "unpriv: WIN_INFO on a revoked window still answers");
	CHECK(!bus_on(tb, 0), "unpriv: the other window survives the revoke");
	return failures ? 1 : 0;
}

/*
 * Two users, each with a window onto its own page: user B (65533) tries
 * to reach user A's (65534) page through everything it has: its own
 * window, A's fds and memory through /proc, ptrace, process_vm_readv.
 */
static void two_users(int fd, uint64_t off)
{
	int wa = cut(fd, off, PG, 0, PG, IVSOCK_WIN_NO_RING);
	int wb = cut(fd, off + PG, PG, 0, PG, IVSOCK_WIN_NO_RING);
	int a_ready[2], a_done[2], status = 1 << 8;
	uintptr_t a_addr = 0;
	pid_t a, b;
	char c = 'd';

	CHECK(wa >= 0 && wb >= 0, "windows for user A and user B");
	if (wa < 0 || wb < 0 || pipe(a_ready) < 0 || pipe(a_done) < 0)
		return;
	fflush(stdout);
	a = fork();
	if (a == 0) {
		volatile uint8_t *p;

		close(fd);
		close(wb);
		if (drop_to(65534, 65534) < 0)
			_exit(1);
		p = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, wa, 0);
		if (p == MAP_FAILED)
			_exit(1);
		pattern_fill((uint8_t *)p, PG, 0xa);
		a_addr = (uintptr_t)p;
		if (write(a_ready[1], &a_addr, sizeof(a_addr)) !=
		    sizeof(a_addr) || read(a_done[0], &c, 1) != 1)
			_exit(1);
		_exit(pattern_ok(p, PG, 0xa) ? 0 : 1);
	}
	if (a < 0 || read(a_ready[0], &a_addr, sizeof(a_addr)) !=
	    sizeof(a_addr)) {
		CHECK(0, "user A is up");
		return;
	}
	b = fork();
	if (b == 0) {
		char path[64], buf[16];
		struct iovec l = { buf, sizeof(buf) };
		struct iovec r = { (void *)a_addr, sizeof(buf) };
		volatile uint8_t *p;
		int f;

		failures = 0;		/* ours only, not the parent's */
		close(fd);
		close(wa);
		if (drop_to(65533, 65533) < 0)
			_exit(1);
		snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)a, wa);
		f = open(path, O_RDWR);
		CHECK(f < 0, "user B: open A's window via %s fails (%s)", path,
		      strerror(errno));
		snprintf(path, sizeof(path), "/proc/%d/mem", (int)a);
		f = open(path, O_RDONLY);
		CHECK(f < 0, "user B: open A's %s fails (%s)", path,
		      strerror(errno));
		CHECK(process_vm_readv(a, &l, 1, &r, 1, 0) < 0,
		      "user B: process_vm_readv of A's mapping fails (%s)",
		      strerror(errno));
		CHECK(ptrace(PTRACE_ATTACH, a, NULL, NULL) < 0,
		      "user B: ptrace A fails (%s)", strerror(errno));
		CHECK(map_fails(wb, 2 * PG, PROT_READ, MAP_SHARED, 0, EINVAL),
		      "user B: its window cannot reach A's adjacent page");
		p = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, wb, 0);
		CHECK(p != MAP_FAILED && !pattern_ok(p, PG, 0xa),
		      "user B: its own page is not A's");
		_exit(failures ? 1 : 0);
	}
	if (b > 0)
		waitpid(b, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "user B reached nothing of user A's");
	status = 1 << 8;
	if (write(a_done[1], &c, 1) == 1)
		waitpid(a, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "user A's page intact");
	close(a_ready[0]);
	close(a_ready[1]);
	close(a_done[0]);
	close(a_done[1]);
	close(wa);
	close(wb);
}

/* A process maps, touches and unmaps a window in a loop while we revoke it:
 * it must end with ENODEV at mmap, and nothing may complain.
 */
static void revoke_race(int fd, uint64_t off, int round)
{
	volatile uint8_t *volatile p;
	unsigned long iter;
	int w = cut(fd, off, 2 * PG, 0, 2 * PG, IVSOCK_WIN_NO_RING);
	int ready[2], status = 1 << 8;
	pid_t pid;
	char c = 'r';

	CHECK(w >= 0, "revoke race %d: WINDOW", round);
	if (w < 0 || pipe(ready) < 0)
		return;
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		close(ready[0]);
		for (iter = 0; iter < 10000000; iter++) {
			p = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE,
				 MAP_SHARED, w, 0);
			if (p == MAP_FAILED)
				_exit(errno == ENODEV ? 0 : 1);
			bus_on(p + iter % (2 * PG), 1);
			munmap((void *)p, 2 * PG);
			if (iter == 0 && write(ready[1], &c, 1) != 1)
				_exit(3);
		}
		_exit(2);
	}
	close(ready[1]);
	if (pid > 0 && read(ready[0], &c, 1) == 1) {
		/* Let it loop a little (no timing is asserted). */
		usleep(1000 * (round % 4));
		CHECK(range_ioc(fd, IVSOCK_IOC_WIN_REVOKE, off, PG) == 1,
		      "revoke race %d: REVOKE while another process maps and touches it: 1",
		      round);
		waitpid(pid, &status, 0);
	}
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "revoke race %d: the racer ended by ENODEV at mmap (exit %d)",
	      round, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	close(ready[0]);
	close(w);
	CHECK(busy(fd, off, 2 * PG) == 0, "revoke race %d: BUSY after: 0",
	      round);
}

static int cmd_windows(void)
{
	struct ivsock_dev_info info;
	struct ivsock_dev_window wi;
	uint64_t base;
	uint32_t seed = 0x77, vector;
	struct rusage ru0, ru1;
	long long n;
	int fd = open_dev(), efd, w1, w2, w3, w4, w5, i;
	int status = 1 << 8;	/* "exit 1" if fork fails */
	int to_child[2], to_parent[2];
	uint8_t *shm;
	void *p;
	pid_t pid;
	char c;

	CHECK(get_info(fd, &info) == 0 && info.api_version == 2,
	      "INFO: api_version 2");
	if (failures || info.region_size < 64 * PG || info.vectors == 0)
		return 1;
	base = win_area(&info);
	vector = info.vectors > 1 ? 1 : 0;
	printf("info: window area [0x%llx, +%llu pages)\n",
	       (unsigned long long)base, (unsigned long long)WIN_AREA_PAGES);
	shm = mmap(NULL, info.region_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		   fd, 0);
	CHECK(shm != MAP_FAILED, "mmap region");
	if (shm == MAP_FAILED)
		return 1;

	window_arg_tests(fd, &info, base);
	CHECK(busy(fd, 0, info.region_size) == 0, "BUSY: no window yet");

	/* W1: 2 read-only pages, then 2 writable; rings ourselves. */
	pattern_fill(shm + base, 4 * PG, seed);
	w1 = cut(fd, base, 4 * PG, 2 * PG, 2 * PG, info.peer_id);
	CHECK(w1 >= 0, "WINDOW [area, 4 pages) writable [+2, +4) ringing us");
	/* W2: a tables-like window at 0, read-only, rings nobody. */
	w2 = cut(fd, 0, 4 * PG, 0, 0, IVSOCK_WIN_NO_RING);
	CHECK(w2 >= 0, "WINDOW [0, 4 pages) read-only, no ring");
	if (w1 < 0 || w2 < 0)
		return 1;
	CHECK(fcntl(w1, F_GETFD) == FD_CLOEXEC &&
	      (fcntl(w1, F_GETFL) & O_ACCMODE) == O_RDWR,
	      "window fd is O_RDWR | O_CLOEXEC");
	memset(&wi, 0xff, sizeof(wi));
	CHECK(ioctl(w1, IVSOCK_IOC_WIN_INFO, &wi) == 0 && wi.offset == base &&
	      wi.length == 4 * PG && wi.wr_offset == 2 * PG &&
	      wi.wr_length == 2 * PG && wi.ring_peer == info.peer_id &&
	      wi.flags == 0 && wi.fd == -1 && wi.reserved == 0,
	      "WIN_INFO round trip");
	CHECK(ioctl(w2, IVSOCK_IOC_WIN_INFO, &wi) == 0 && wi.offset == 0 &&
	      wi.wr_length == 0 && wi.ring_peer == IVSOCK_WIN_NO_RING,
	      "WIN_INFO of the read-only window");
	CHECK(busy(fd, base, 4 * PG) == 1, "BUSY over W1: 1");
	CHECK(busy(fd, base + 4 * PG - 1, 1) == 1, "BUSY on W1's last byte: 1");
	CHECK(busy(fd, base + 4 * PG, PG) == 0, "BUSY just after W1: 0");
	CHECK(busy(fd, 0, info.region_size) == 2, "BUSY over the region: 2");

	/* W3: BUSY follows the mapping once the fd is closed. */
	w3 = cut(fd, base + 4 * PG, PG, 0, 0, IVSOCK_WIN_NO_RING);
	p = w3 < 0 ? MAP_FAILED :
	    mmap(NULL, PG, PROT_READ, MAP_SHARED, w3, 0);
	CHECK(p != MAP_FAILED, "W3 cut and mapped");
	CHECK(busy(fd, base + 4 * PG, PG) == 1, "BUSY with W3's fd: 1");
	close(w3);
	CHECK(busy(fd, base + 4 * PG, PG) == 1,
	      "BUSY with W3's mapping only: 1");
	if (p != MAP_FAILED)
		munmap(p, PG);
	CHECK(busy(fd, base + 4 * PG, PG) == 0, "BUSY after munmap: 0");

	/* REVOKE counts every live window it kills, once. */
	w4 = cut(fd, base + 8 * PG, 2 * PG, 0, 2 * PG, IVSOCK_WIN_NO_RING);
	w5 = cut(fd, base + 9 * PG, 2 * PG, 0, 0, IVSOCK_WIN_NO_RING);
	CHECK(w4 >= 0 && w5 >= 0, "W4, W5 overlapping");
	CHECK(range_ioc(fd, IVSOCK_IOC_WIN_REVOKE, base + 9 * PG, 1) == 2,
	      "REVOKE of their common page: 2");
	CHECK(range_ioc(fd, IVSOCK_IOC_WIN_REVOKE, base + 8 * PG, 3 * PG) == 0,
	      "REVOKE again: 0");
	CHECK(busy(fd, base + 8 * PG, 3 * PG) == 2, "BUSY still counts them: 2");
	close(w4);
	close(w5);
	CHECK(busy(fd, base + 8 * PG, 3 * PG) == 0, "BUSY after close: 0");

	/* Each side's ioctls on the other: ENOTTY. */
	CHECK(ioctl(w1, IVSOCK_IOC_INFO, &info) < 0 && errno == ENOTTY,
	      "IVSOCK_IOC_INFO on a window: ENOTTY");
	CHECK(ioctl(fd, IVSOCK_IOC_WIN_INFO, &wi) < 0 && errno == ENOTTY,
	      "IVSOCK_IOC_WIN_INFO on the device: ENOTTY");
	CHECK(win_ring(fd, 0) < 0 && errno == ENOTTY,
	      "IVSOCK_IOC_WIN_RING on the device: ENOTTY");

	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	CHECK(bind_efd(fd, efd, vector) == 0, "bind vector %u", vector);
	if (pipe(to_child) < 0 || pipe(to_parent) < 0)
		return 1;
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		CHECK(0, "fork");
	if (pid == 0) {
		/* What an agent would pass: window fds only. */
		munmap(shm, info.region_size);
		close(fd);
		close(efd);
		close(to_child[1]);
		close(to_parent[0]);
		_exit(windows_child(w1, w2, vector, seed, to_child[0],
				    to_parent[1]));
	}
	close(to_child[0]);
	close(to_parent[1]);
	if (read(to_parent[0], &c, 1) != 1) {
		CHECK(0, "unprivileged child reached the revoke step");
	} else {
		CHECK(pattern_ok(shm + base + 2 * PG, 2 * PG, seed + 1),
		      "child's writes through its window landed in BAR2");
		CHECK(pattern_ok(shm + base, 2 * PG, seed),
		      "read-only part unchanged");
		CHECK(efd_wait(efd, 5000) >= 1,
		      "child's WIN_RING arrived on vector %u", vector);
		/* The device's own mapping is already faulted in: a revoke
		 * must not zap it (that would cost the agent a refault per
		 * connection), so touching it again takes no fault.
		 */
		(void)*(volatile uint8_t *)(shm + base);
		/* The fork left our stack copy-on-write: write the pages the
		 * measured calls use first, so that a COW fault of our own
		 * stack does not count as a refault of the mapping.
		 */
		(void)busy(fd, base, PG);
		getrusage(RUSAGE_SELF, &ru1);
		getrusage(RUSAGE_SELF, &ru0);
		n = range_ioc(fd, IVSOCK_IOC_WIN_REVOKE, base, PG);
		(void)*(volatile uint8_t *)(shm + base);
		getrusage(RUSAGE_SELF, &ru1);
		CHECK(n == 1, "REVOKE W1 while the child maps it: 1");
		CHECK(ru1.ru_minflt == ru0.ru_minflt &&
		      ru1.ru_majflt == ru0.ru_majflt,
		      "REVOKE left the device's own mapping alone (%ld faults)",
		      ru1.ru_minflt - ru0.ru_minflt);
		CHECK(busy(fd, base, 4 * PG) == 1,
		      "BUSY still counts revoked W1: 1");
		CHECK(map_fails(w1, PG, PROT_READ, MAP_SHARED, 0, ENODEV),
		      "mmap of revoked W1: ENODEV");
		CHECK(pattern_ok(shm + base, 2 * PG, seed),
		      "the device's own mapping of the range still works");
		c = 'g';
		if (write(to_child[1], &c, 1) != 1)
			CHECK(0, "tell the child");
	}
	for (i = 0; pid > 0 && waitpid(pid, &status, 0) < 0 && i < 10; i++)
		;
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "unprivileged child passed");
	for (i = 0; i < 10; i++)
		revoke_race(fd, base + 12 * PG, i);
	two_users(fd, base + 14 * PG);
	CHECK(busy(fd, base, 4 * PG) == 1, "BUSY with our W1 fd: 1");
	close(w1);
	CHECK(busy(fd, base, 4 * PG) == 0, "BUSY after the last W1 fd: 0");
	close(w2);
	CHECK(busy(fd, 0, info.region_size) == 0, "BUSY over the region: 0");
	close(efd);
	close(to_child[1]);
	close(to_parent[0]);
	munmap(shm, info.region_size);
	close(fd);
	return failures ? 1 : 0;
}

/* Hold a window past a refused rmmod: it must still work afterwards. */
static int cmd_winhold(void)
{
	struct ivsock_dev_info info;
	volatile uint8_t *p;
	int fd = open_dev(), w, i;

	CHECK(get_info(fd, &info) == 0, "INFO");
	w = cut(fd, win_area(&info), PG, 0, PG, info.peer_id);
	CHECK(w >= 0, "WINDOW");
	close(fd);
	if (w < 0)
		return 1;
	p = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, w, 0);
	CHECK(p != MAP_FAILED, "window mapped, device fd closed");
	if (p == MAP_FAILED)
		return 1;
	p[0] = 1;
	printf("IVSOCK-WINHOLD-READY\n");
	fflush(stdout);
	for (i = 0; i < 3000 && access("/tmp/winhold.stop", F_OK) < 0; i++)
		usleep(100000);
	CHECK(!bus_on(p, 1) && p[0] == 0x5a, "window mapping still works");
	CHECK(win_ring(w, 0) == 0, "window still rings");
	munmap((void *)p, PG);
	close(w);
	return failures ? 1 : 0;
}

static int cmd_unplug(void)
{
	struct ivsock_dev_info info;
	struct sigaction sa;
	int fd = open_dev();
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	struct pollfd p[2];
	volatile uint8_t *shm, *wmap;
	volatile uint32_t *regs;
	int hup = 0, fired = 0, bus, wa, wb;
	struct ivsock_dev_window wi;
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
	/* Live windows: one mapped read-write, one only held. */
	wa = cut(fd, win_area(&info), 2 * PG, 0, 2 * PG, info.peer_id);
	wb = cut(fd, win_area(&info) + 2 * PG, PG, 0, 0, IVSOCK_WIN_NO_RING);
	CHECK(wa >= 0 && wb >= 0, "two windows cut");
	wmap = wa < 0 ? MAP_FAILED :
	       mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, wa, 0);
	CHECK(wmap != MAP_FAILED, "window mapped read-write");
	if (wmap == MAP_FAILED)
		return 1;
	wmap[PG] = 1;			/* fault it in */

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
	CHECK(bus_on(wmap + PG, 1), "old window mapping: SIGBUS");
	CHECK(win_ring(wa, 0) < 0 && errno == ENODEV,
	      "WIN_RING after unplug: ENODEV");
	CHECK(map_fails(wb, PG, PROT_READ, MAP_SHARED, 0, ENODEV),
	      "window mmap after unplug: ENODEV");
	CHECK(ioctl(wb, IVSOCK_IOC_WIN_INFO, &wi) == 0 && wi.length == PG,
	      "WIN_INFO after unplug still answers");
	CHECK(busy(fd, 0, PG) < 0 && errno == ENODEV,
	      "BUSY after unplug: ENODEV");
	CHECK(close(fd) == 0, "close after unplug");
	CHECK(close(wb) == 0, "close a window after unplug");
	CHECK(close(wa) == 0 && munmap((void *)wmap, 2 * PG) == 0,
	      "close and unmap the mapped window after unplug");
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
	volatile uint8_t *volatile p;
	uint64_t area;
	int w;
	uint64_t cnt;
	double end = now() + 300;
	int gone = 0;

	if (get_info(fd, &info) < 0)
		return 1;
	area = win_area(&info) + 8 * PG;
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
		w = cut(fd, area + (iter % 4) * PG, 2 * PG, 0, 2 * PG,
			info.peer_id);
		if (w < 0) {
			gone = errno == ENODEV;
			break;
		}
		p = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, w,
			 0);
		if (p != MAP_FAILED) {
			if (sigsetjmp(bus_jmp, 1) == 0)
				p[iter % (2 * PG)] = (uint8_t)iter;
			else
				bus++;
		} else if (errno != ENODEV) {
			close(w);
			break;
		}
		win_ring(w, 0);
		close(w);
		if (p != MAP_FAILED)
			munmap((void *)p, 2 * PG);
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
	if (argc == 2 && !strcmp(argv[1], "windows"))
		return cmd_windows();
	if (argc == 2 && !strcmp(argv[1], "winhold"))
		return cmd_winhold();
	fprintf(stderr, "usage: %s info|pair|unplug|hammer|windows|winhold\n",
		argv[0]);
	return 2;
}
