// SPDX-License-Identifier: MIT
/* The shim's own file descriptors, kept out of the program's way (see
 * fdguard.h): the set of fds the shim holds, moving them high, the
 * program's close_range()/closefrom() around them, and the libc wrappers
 * the protocol code linked into the shim goes through (ld --wrap). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "sock_int.h"

#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE (1U << 1)
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

#define G_MAX 1024   /* fds the shim holds at once (two per sleeping thread...) */
#define A_MAX 64     /* numbers that moved away */
#define TOP_CAP 4096 /* never above this: the kernel's fd table grows with it */

struct gent {
	_Atomic int fd;          /* fd + 1; 0: free slot */
	int *_Atomic ref[2];     /* variables holding the number */
	_Atomic int ident;       /* dev/ino below are valid */
	dev_t dev;
	ino_t ino;
};

struct alias {
	_Atomic int from;        /* from + 1; 0: free */
	_Atomic int to;          /* the number now, -1: lost */
};

_Atomic int ivs_fdguard_lo = INT_MAX;
_Atomic int ivs_fdguard_moved;
static struct gent g[G_MAX];
static _Atomic int g_n;          /* slots in use are below */
static struct alias al[A_MAX];
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
int (*ivs_libc_close)(int);

static int find(int fd)
{
	int n = atomic_load_explicit(&g_n, memory_order_acquire);

	for (int i = 0; i < n; i++)
		if (atomic_load_explicit(&g[i].fd, memory_order_acquire) == fd + 1)
			return i;
	return -1;
}

bool ivs_fdguard_owned_slow(int fd)
{
	return fd >= 0 && find(fd) >= 0;
}

static bool is_alias(int fd)
{
	for (int i = 0; i < A_MAX; i++)
		if (atomic_load(&al[i].from) == fd + 1)
			return true;
	return false;
}

/* Highest number the shim may use: soft RLIMIT_NOFILE, at most TOP_CAP. */
static int top_fd(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur > TOP_CAP)
		return TOP_CAP;
	return (int)rl.rlim_cur;
}

/* A close-on-exec duplicate of fd at the highest free number we can get
 * (counting down from the top), or -1. `avoid` is never chosen. */
static int dup_high(int fd, int avoid)
{
	int top = top_fd(), floor = top / 2, tries = 0;

	if (floor < 16)
		floor = 16;
	for (int c = top - 1; c >= floor && tries < 32; c--) {
		int n;

		if (c == avoid || find(c) >= 0 || is_alias(c))
			continue;
		tries++;
		n = ivs_rc.fcntl(fd, F_DUPFD_CLOEXEC, c);
		if (n >= 0) {
			if (n == avoid || is_alias(n)) { /* freed above c: not that one */
				ivs_libc_close(n);
				continue;
			}
			return n;
		}
		if (errno != EMFILE && errno != EINVAL)
			return -1;
	}
	return -1;
}

static void lo_lower(int fd)
{
	int lo = atomic_load(&ivs_fdguard_lo);

	while (fd < lo && !atomic_compare_exchange_weak(&ivs_fdguard_lo, &lo, fd))
		;
}

static int add_locked(int fd, int *ref)
{
	int n = atomic_load(&g_n), i;

	i = find(fd);
	if (i < 0) {
		for (i = 0; i < n; i++)
			if (!atomic_load(&g[i].fd))
				break;
		if (i == n) {
			if (n == G_MAX)
				return -1;
		}
		atomic_store(&g[i].ref[0], NULL);
		atomic_store(&g[i].ref[1], NULL);
		atomic_store(&g[i].ident, 0);
		atomic_store_explicit(&g[i].fd, fd + 1, memory_order_release);
		if (i == n)
			atomic_store_explicit(&g_n, n + 1, memory_order_release);
		lo_lower(fd);
	}
	if (ref) {
		for (int k = 0; k < 2; k++) {
			int *r = atomic_load(&g[i].ref[k]);

			if (r == ref)
				break;
			if (!r) {
				atomic_store(&g[i].ref[k], ref);
				break;
			}
		}
	}
	return i;
}

/* Forget slot i (the fd is closed or no longer ours). */
static void drop_locked(int i)
{
	int fd = atomic_load(&g[i].fd) - 1;

	atomic_store(&g[i].fd, 0);
	for (int k = 0; k < A_MAX; k++)
		if (atomic_load(&al[k].from) && atomic_load(&al[k].to) == fd)
			atomic_store(&al[k].from, 0);
}

void ivs_fdguard_keep(int fd, int *ref)
{
	if (fd < 0)
		return;
	pthread_mutex_lock(&g_mu);
	if (add_locked(fd, ref) < 0)
		ivs_debug("fd %d: too many shim fds to guard", fd);
	pthread_mutex_unlock(&g_mu);
}

int ivs_fdguard_take(int fd, int *ref)
{
	int n;

	if (fd < 0)
		return fd;
	/* no ivs_init(): called from inside it (log.c) */
	n = dup_high(fd, -1);
	if (n >= 0 && n > fd) {
		int err = errno;

		ivs_libc_close(fd);
		errno = err;
		fd = n;
	} else if (n >= 0) {
		ivs_libc_close(n); /* not higher after all */
	}
	if (ref)
		*ref = fd;
	ivs_fdguard_keep(fd, ref);
	return fd;
}

void ivs_fdguard_ref(int fd, int *ref)
{
	ivs_fdguard_keep(fd, ref);
}

void ivs_fdguard_ident(int fd)
{
	struct stat st;
	int i;

	if (fd < 0 || fstat(fd, &st) < 0)
		return;
	pthread_mutex_lock(&g_mu);
	i = add_locked(fd, NULL);
	if (i >= 0) {
		g[i].dev = st.st_dev;
		g[i].ino = st.st_ino;
		atomic_store(&g[i].ident, 1);
	}
	pthread_mutex_unlock(&g_mu);
}

/* Remember that number `from` is not ours any more (to: where it went,
 * -1: nowhere), so that holders of the old number never use it. */
static void alias_locked(int from, int to)
{
	int free_i = -1;

	for (int k = 0; k < A_MAX; k++) {
		int f = atomic_load(&al[k].from);

		if (f && atomic_load(&al[k].to) == from)
			atomic_store(&al[k].to, to); /* moved again */
		if (f == from + 1)
			free_i = k;
		else if (!f && free_i < 0)
			free_i = k;
	}
	if (free_i < 0)
		free_i = 0; /* full: the oldest forwarding is lost */
	atomic_store(&al[free_i].to, to);
	atomic_store(&al[free_i].from, from + 1);
	atomic_store(&ivs_fdguard_moved, 1);
}

bool ivs_fdguard_verify(int fd)
{
	struct stat st;
	int i = fd >= 0 ? find(fd) : -1;

	if (i < 0)
		return false;
	if (!atomic_load(&g[i].ident))
		return true;
	if (fstat(fd, &st) == 0 && st.st_dev == g[i].dev && st.st_ino == g[i].ino)
		return true;
	/* Replaced behind our back (a raw dup2/close_range): it is the
	 * program's now. Never write to it, never close it. */
	pthread_mutex_lock(&g_mu);
	if (atomic_load(&g[i].fd) == fd + 1) {
		for (int k = 0; k < 2; k++) {
			int *r = atomic_load(&g[i].ref[k]);

			if (r)
				__atomic_store_n(r, -1, __ATOMIC_RELAXED);
		}
		drop_locked(i);
		alias_locked(fd, -1);
	}
	pthread_mutex_unlock(&g_mu);
	ivs_debug("fd %d: no longer the shim's file; dropped", fd);
	return false;
}

int ivs_fdguard_fd(int fd)
{
	if (__builtin_expect(!atomic_load_explicit(&ivs_fdguard_moved, memory_order_relaxed), 1) ||
	    fd < 0)
		return fd;
	for (int hop = 0; hop < 4; hop++) {
		int k;

		for (k = 0; k < A_MAX; k++)
			if (atomic_load(&al[k].from) == fd + 1)
				break;
		if (k == A_MAX)
			return fd;
		fd = atomic_load(&al[k].to);
		if (fd < 0)
			return -1;
	}
	return fd;
}

int ivs_fdguard_real_close(int fd)
{
	if (ivs_fdguard_owned(fd)) {
		int i;

		pthread_mutex_lock(&g_mu);
		i = find(fd);
		if (i >= 0)
			drop_locked(i);
		pthread_mutex_unlock(&g_mu);
	}
	return ivs_libc_close(fd);
}

int ivs_fdguard_close(int fd)
{
	int now = ivs_fdguard_fd(fd);

	if (now != fd) {
		pthread_mutex_lock(&g_mu);
		for (int k = 0; k < A_MAX; k++)
			if (atomic_load(&al[k].from) == fd + 1)
				atomic_store(&al[k].from, 0);
		pthread_mutex_unlock(&g_mu);
	}
	if (now < 0)
		return 0; /* lost: the number is the program's, leave it */
	return ivs_fdguard_real_close(now);
}

void ivs_fdguard_evict(int fd)
{
	int i, n;

	pthread_mutex_lock(&g_mu);
	i = find(fd);
	if (i < 0) {
		pthread_mutex_unlock(&g_mu);
		return;
	}
	n = dup_high(fd, fd);
	if (n >= 0) {
		atomic_store_explicit(&g[i].fd, n + 1, memory_order_release);
		lo_lower(n);
		for (int k = 0; k < 2; k++) {
			int *r = atomic_load(&g[i].ref[k]);

			if (r)
				__atomic_store_n(r, n, __ATOMIC_RELEASE);
		}
		alias_locked(fd, n);
		pthread_mutex_unlock(&g_mu);
		ivs_debug("shim fd %d moved to %d: the program takes the number", fd, n);
		return;
	}
	/* Nowhere to go: the resource is lost to us (the program's dup2
	 * closes it). Holders of the number see -1 from now on. */
	for (int k = 0; k < 2; k++) {
		int *r = atomic_load(&g[i].ref[k]);

		if (r)
			__atomic_store_n(r, -1, __ATOMIC_RELEASE);
	}
	drop_locked(i);
	alias_locked(fd, -1);
	pthread_mutex_unlock(&g_mu);
}

int ivs_fdguard_dupfd_fix(int fd, int cmd, long minfd, int r)
{
	int best = -1, got;

	if (r < 0 || minfd < 0 || minfd >= r || atomic_load(&ivs_fdguard_lo) >= r)
		return r;
	/* The kernel skipped our numbers: the program should have had the
	 * lowest of them. */
	for (int i = 0, n = atomic_load(&g_n); i < n; i++) {
		int f = atomic_load(&g[i].fd) - 1;

		if (f >= minfd && f < r && (best < 0 || f < best))
			best = f;
	}
	if (best < 0)
		return r;
	ivs_fdguard_evict(best);
	if (ivs_fdguard_owned(best))
		return r; /* could not make room: keep what the kernel gave */
	got = ivs_rc.dup3(fd, best, cmd == F_DUPFD_CLOEXEC ? O_CLOEXEC : 0);
	if (got < 0)
		return r;
	ivs_libc_close(r);
	return got;
}

/* ---- close_range() and closefrom() of the program ---- */

static int sys_close_range(unsigned first, unsigned last, unsigned flags)
{
	return (int)syscall(SYS_close_range, first, last, flags);
}

static int cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

/* The program's fds in [first, last] leave the shim's tables (as close()). */
static void forget_range(unsigned first, unsigned last)
{
	unsigned cap = (unsigned)top_fd();

	if (cap < 65536)
		cap = 65536;
	if (last > cap)
		last = cap;
	for (unsigned fd = first; fd <= last && fd < INT_MAX; fd++) {
		if (ivs_fdguard_owned((int)fd))
			continue;
		if (ivs_fd_lookup((int)fd))
			ivs_fd_forget((int)fd);
		else
			ivs_mux_fd_closed((int)fd);
	}
}

IVS_EXPORT int close_range(unsigned first, unsigned last, int flags)
{
	int own[G_MAX], n = 0, rc = 0;
	unsigned from = first;

	ivs_init();
	if (first > last || ((unsigned)flags & ~(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC)))
		return ivs_set_errno(-EINVAL);
	/* as close(): the shim lets go of the program's accelerated sockets
	 * while their fds still exist (a connector may still fall back) */
	if (!((unsigned)flags & CLOSE_RANGE_CLOEXEC))
		forget_range(first, last);
	for (int i = 0, m = atomic_load(&g_n); i < m && n < G_MAX; i++) {
		int f = atomic_load(&g[i].fd) - 1;

		if (f >= 0 && (unsigned)f >= first && (unsigned)f <= last)
			own[n++] = f;
	}
	qsort(own, (size_t)n, sizeof(int), cmp_int);
	/* the program's numbers only, in the gaps between ours */
	for (int i = 0; i < n && rc == 0; i++) {
		if ((unsigned)own[i] > from)
			rc = sys_close_range(from, (unsigned)own[i] - 1, (unsigned)flags);
		from = (unsigned)own[i] + 1;
	}
	if (rc == 0 && from <= last && from != 0)
		rc = sys_close_range(from, last, (unsigned)flags);
	return rc;
}

/* glibc's closefrom() calls close_range() inside libc: interpose it too.
 * Without close_range (old kernel), close what /proc/self/fd lists. */
IVS_EXPORT void closefrom(int lowfd)
{
	DIR *d;
	struct dirent *e;
	int fds[256], n;

	if (lowfd < 0)
		lowfd = 0;
	if (close_range((unsigned)lowfd, ~0U, 0) == 0 || errno != ENOSYS)
		return;
	do {
		n = 0;
		d = opendir("/proc/self/fd");
		if (!d)
			return;
		while ((e = readdir(d)) && n < 256) {
			int fd = atoi(e->d_name);

			if (e->d_name[0] >= '0' && e->d_name[0] <= '9' && fd >= lowfd &&
			    fd != dirfd(d) && !ivs_fdguard_owned(fd))
				fds[n++] = fd;
		}
		closedir(d);
		for (int i = 0; i < n; i++) {
			forget_range((unsigned)fds[i], (unsigned)fds[i]);
			ivs_libc_close(fds[i]);
		}
	} while (n == 256);
}

/* ---- what the protocol code linked into the shim calls (ld --wrap) ---- */

int __real_socket(int, int, int);
int __real_eventfd(unsigned, int);
int __wrap_socket(int domain, int type, int proto);
int __wrap_eventfd(unsigned initval, int flags);
int __wrap_close(int fd);
ssize_t __wrap_read(int fd, void *buf, size_t len);
ssize_t __wrap_write(int fd, const void *buf, size_t len);
int __wrap_ioctl(int fd, unsigned long req, ...);
int __wrap_fcntl(int fd, int cmd, ...);
ssize_t __wrap_recvmsg(int fd, struct msghdr *m, int flags);
ssize_t __wrap_sendmsg(int fd, const struct msghdr *m, int flags);

/* The agent socket (the protocol code makes no other): high, recorded,
 * its identity checked before each request. */
int __wrap_socket(int domain, int type, int proto)
{
	int fd = __real_socket(domain, type, proto);

	if (fd < 0)
		return fd;
	fd = ivs_fdguard_take(fd, NULL);
	ivs_fdguard_ident(fd);
	return fd;
}

int __wrap_eventfd(unsigned initval, int flags)
{
	int fd = __real_eventfd(initval, flags);

	return fd < 0 ? fd : ivs_fdguard_take(fd, NULL);
}

int __wrap_close(int fd)
{
	ivs_init();
	return ivs_fdguard_close(fd);
}

static int use_fd(int fd)
{
	int now = ivs_fdguard_fd(fd);

	if (now < 0)
		errno = EBADF;
	return now;
}

ssize_t __wrap_read(int fd, void *buf, size_t len)
{
	if ((fd = use_fd(fd)) < 0)
		return -1;
	return ivs_rc.read(fd, buf, len);
}

ssize_t __wrap_write(int fd, const void *buf, size_t len)
{
	if ((fd = use_fd(fd)) < 0)
		return -1;
	return ivs_rc.write(fd, buf, len);
}

int __wrap_ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if ((fd = use_fd(fd)) < 0)
		return -1;
	return ivs_rc.ioctl(fd, req, arg);
}

/* The protocol code's fcntl (F_GET_SEALS, F_GETFL/F_SETFL on the fds the
 * agent handed over) reaches the kernel, not the program-facing guard that
 * answers EBADF for shim fds. Every command it uses takes an int or nothing. */
int __wrap_fcntl(int fd, int cmd, ...)
{
	va_list ap;
	unsigned long arg;

	va_start(ap, cmd);
	arg = va_arg(ap, unsigned long);
	va_end(ap);
	if ((fd = use_fd(fd)) < 0)
		return -1;
	return ivs_rc.fcntl(fd, cmd, arg);
}

ssize_t __wrap_sendmsg(int fd, const struct msghdr *m, int flags)
{
	if ((fd = use_fd(fd)) < 0)
		return -1;
	if (ivs_fdguard_owned(fd) && !ivs_fdguard_verify(fd)) {
		errno = EBADF;
		return -1;
	}
	return ivs_rc.sendmsg(fd, m, flags);
}

/* Every fd the agent hands over goes high and is recorded. */
ssize_t __wrap_recvmsg(int fd, struct msghdr *m, int flags)
{
	struct cmsghdr *c;
	ssize_t n;

	if ((fd = use_fd(fd)) < 0)
		return -1;
	if (ivs_fdguard_owned(fd) && !ivs_fdguard_verify(fd)) {
		errno = EBADF;
		return -1;
	}
	n = ivs_rc.recvmsg(fd, m, flags);
	if (n < 0 || !m->msg_control)
		return n;
	for (c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
		size_t k;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int f;

			memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			f = ivs_fdguard_take(f, NULL);
			memcpy(CMSG_DATA(c) + i * sizeof(int), &f, sizeof(int));
		}
	}
	return n;
}

static void guard_atfork_child(void)
{
	pthread_mutex_init(&g_mu, NULL);
}

__attribute__((constructor)) static void guard_init(void)
{
	pthread_atfork(NULL, NULL, guard_atfork_child);
}
