// SPDX-License-Identifier: MIT
/* The interposed data-path entry points (read/write/recv/send families,
 * their _FORTIFY_SOURCE variants, sendfile): a plain fd costs one table
 * lookup before the real call; accelerated ones go to sock_data.c. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/sendfile.h>
#include <sys/ioctl.h>
#include <dlfcn.h>
#include <fcntl.h>

#include "sock_int.h"

/* The accelerated socket of fd, or NULL: the real call, and *tcp may then
 * be a plain socket that could still be promoted, counted while the real
 * call is in the kernel (KERNEL below; sock_promote.c). */
static inline struct ivs_sock *lookup(int fd, struct ivs_sock **tcp)
{
	*tcp = NULL;
	return __builtin_expect(ivs_fd_lookup(fd) != NULL, 0) ? ivs_io_get(fd, tcp) : NULL;
}

/* The real call, with errno kept across the count. */
#define KERNEL(tcp, call) ({					\
	__typeof__(call) r_ = (call);				\
	if (__builtin_expect((tcp) != NULL, 0)) {		\
		int e_ = errno;					\
		ivs_promo_leave(tcp);				\
		errno = e_;					\
	}							\
	r_; })

/* IVS_PASS from the core: that direction is on TCP now (fell back, or
 * switched); if the socket may be promoted again the real call is counted
 * like a promotable socket's (*tcp), or, a promotion under way, goes back
 * to the core once it is done. */
static ssize_t do_io(struct ivs_sock *s, int fd, const struct iovec *iov, int n, int flags,
		     struct ivs_sock **tcp, bool send)
{
	ssize_t rc;

	for (;;) {
		rc = send ? ivs_send(s, fd, iov, n, flags) : ivs_recv(s, fd, iov, n, flags);
		if (rc != IVS_PASS || !s->promo_ok)
			break;
		/* the real call is counted, like a promotable socket's */
		if (ivs_promo_enter(s)) {
			*tcp = s;
			return IVS_PASS;
		}
		ivs_sock_put(s);
		if (!(s = ivs_io_get(fd, tcp)))
			return IVS_PASS;
	}
	ivs_sock_put(s);
	return rc;
}
#define do_recv(s, fd, iov, n, flags, tcp) do_io(s, fd, iov, n, flags, tcp, false)
#define do_send(s, fd, iov, n, flags, tcp) do_io(s, fd, iov, n, flags, tcp, true)

IVS_EXPORT ssize_t read(int fd, void *buf, size_t len)
{
	struct ivs_sock *s, *tcp;
	ssize_t rc;

	ivs_init();
	s = lookup(fd, &tcp);
	if (s) {
		struct iovec v = { buf, len };

		rc = do_recv(s, fd, &v, 1, 0, &tcp);
		if (rc != IVS_PASS)
			return ivs_set_errno(rc) < 0 ? -1 : rc;
	}
	return KERNEL(tcp, ivs_rc.read(fd, buf, len));
}

IVS_EXPORT ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen)
{
	if (len > buflen)
		abort();
	return read(fd, buf, len);
}

IVS_EXPORT ssize_t write(int fd, const void *buf, size_t len)
{
	struct ivs_sock *s, *tcp;
	ssize_t rc;

	ivs_init();
	s = lookup(fd, &tcp);
	if (s) {
		struct iovec v = { (void *)buf, len };

		rc = do_send(s, fd, &v, 1, 0, &tcp);
		if (rc != IVS_PASS)
			return ivs_set_errno(rc) < 0 ? -1 : rc;
	}
	return KERNEL(tcp, ivs_rc.write(fd, buf, len));
}

IVS_EXPORT ssize_t readv(int fd, const struct iovec *iov, int n)
{
	struct ivs_sock *s, *tcp;
	ssize_t rc;

	ivs_init();
	s = lookup(fd, &tcp);
	if (s && n >= 0 && n <= 1024) {
		rc = do_recv(s, fd, iov, n, 0, &tcp);
		if (rc != IVS_PASS)
			return ivs_set_errno(rc) < 0 ? -1 : rc;
	} else if (s) {
		ivs_sock_put(s);
	}
	return KERNEL(tcp, ivs_rc.readv(fd, iov, n));
}

IVS_EXPORT ssize_t writev(int fd, const struct iovec *iov, int n)
{
	struct ivs_sock *s, *tcp;
	ssize_t rc;

	ivs_init();
	s = lookup(fd, &tcp);
	if (s && n >= 0 && n <= 1024) {
		rc = do_send(s, fd, iov, n, 0, &tcp);
		if (rc != IVS_PASS)
			return ivs_set_errno(rc) < 0 ? -1 : rc;
	} else if (s) {
		ivs_sock_put(s);
	}
	return KERNEL(tcp, ivs_rc.writev(fd, iov, n));
}

IVS_EXPORT ssize_t recv(int fd, void *buf, size_t len, int flags)
{
	struct ivs_sock *s, *tcp;
	ssize_t rc;

	ivs_init();
	s = lookup(fd, &tcp);
	if (s) {
		struct iovec v = { buf, len };

		rc = do_recv(s, fd, &v, 1, flags, &tcp);
		if (rc != IVS_PASS)
			return ivs_set_errno(rc) < 0 ? -1 : rc;
	}
	return KERNEL(tcp, ivs_rc.recv(fd, buf, len, flags));
}

IVS_EXPORT ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags)
{
	if (len > buflen)
		abort();
	return recv(fd, buf, len, flags);
}

IVS_EXPORT ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *a,
			    socklen_t *al)
{
	struct ivs_sock *s, *tcp;
	ssize_t rc;

	ivs_init();
	s = lookup(fd, &tcp);
	if (s) {
		struct iovec v = { buf, len };

		rc = do_recv(s, fd, &v, 1, flags, &tcp);
		if (rc != IVS_PASS) {
			if (rc >= 0 && a && al)
				*al = 0; /* TCP reports no address */
			return ivs_set_errno(rc) < 0 ? -1 : rc;
		}
	}
	return KERNEL(tcp, ivs_rc.recvfrom(fd, buf, len, flags, a, al));
}

IVS_EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags,
				  struct sockaddr *a, socklen_t *al)
{
	if (len > buflen)
		abort();
	return recvfrom(fd, buf, len, flags, a, al);
}

IVS_EXPORT ssize_t send(int fd, const void *buf, size_t len, int flags)
{
	struct ivs_sock *s, *tcp;
	ssize_t rc;

	ivs_init();
	s = lookup(fd, &tcp);
	if (s) {
		struct iovec v = { (void *)buf, len };

		rc = do_send(s, fd, &v, 1, flags, &tcp);
		if (rc != IVS_PASS)
			return ivs_set_errno(rc) < 0 ? -1 : rc;
	}
	return KERNEL(tcp, ivs_rc.send(fd, buf, len, flags));
}

IVS_EXPORT ssize_t sendto(int fd, const void *buf, size_t len, int flags,
			  const struct sockaddr *a, socklen_t al)
{
	struct ivs_sock *s, *tcp;
	ssize_t rc;

	ivs_init();
	s = lookup(fd, &tcp);
	if (s) {
		struct iovec v = { (void *)buf, len };

		rc = do_send(s, fd, &v, 1, flags, &tcp);
		if (rc != IVS_PASS)
			return ivs_set_errno(rc) < 0 ? -1 : rc;
	}
	return KERNEL(tcp, ivs_rc.sendto(fd, buf, len, flags, a, al));
}

IVS_EXPORT ssize_t recvmsg(int fd, struct msghdr *m, int flags)
{
	struct ivs_sock *s, *tcp;
	ssize_t rc;

	ivs_init();
	s = lookup(fd, &tcp);
	if (s && m && m->msg_iovlen <= 1024) {
		rc = do_recv(s, fd, m->msg_iov, (int)m->msg_iovlen, flags, &tcp);
		if (rc != IVS_PASS) {
			if (rc >= 0) {
				m->msg_namelen = 0;
				m->msg_controllen = 0;
				m->msg_flags = 0;
			}
			return ivs_set_errno(rc) < 0 ? -1 : rc;
		}
	} else if (s) {
		ivs_sock_put(s);
	}
	return KERNEL(tcp, ivs_rc.recvmsg(fd, m, flags));
}

IVS_EXPORT ssize_t sendmsg(int fd, const struct msghdr *m, int flags)
{
	struct ivs_sock *s, *tcp;
	ssize_t rc;

	ivs_init();
	s = lookup(fd, &tcp);
	/* Ancillary data (SCM_RIGHTS is not TCP anyway) keeps the kernel path. */
	if (s && m && m->msg_iovlen <= 1024 && !m->msg_controllen) {
		rc = do_send(s, fd, m->msg_iov, (int)m->msg_iovlen, flags, &tcp);
		if (rc != IVS_PASS)
			return ivs_set_errno(rc) < 0 ? -1 : rc;
	} else if (s) {
		ivs_sock_put(s);
	}
	return KERNEL(tcp, ivs_rc.sendmsg(fd, m, flags));
}

/* sendfile to an accelerated socket: copy through a bounce buffer. */
static ssize_t ring_sendfile(struct ivs_sock *s, int out, int in, off_t *off, size_t count)
{
	static __thread char *buf;
	size_t total = 0;
	const size_t bsz = 65536;

	if (!buf)
		buf = malloc(bsz);
	if (!buf)
		return -ENOMEM;
	while (total < count) {
		size_t want = count - total < bsz ? count - total : bsz;
		ssize_t r = off ? pread(in, buf, want, *off) : ivs_rc.read(in, buf, want);
		struct iovec v;
		ssize_t w;

		if (r < 0)
			return total ? (ssize_t)total : -errno;
		if (r == 0)
			break;
		v.iov_base = buf;
		v.iov_len = (size_t)r;
		w = ivs_send(s, out, &v, 1, total ? MSG_DONTWAIT : 0);
		if (w == IVS_PASS) {
			/* fell back under us: the rest goes the kernel way
			 * (through our write: counted if it may be promoted) */
			w = write(out, buf, (size_t)r);
			if (w < 0)
				w = -errno;
		}
		if (w <= 0 && (w != -EAGAIN || total == 0)) {
			/* nothing of this chunk went out: the file position
			 * stays where the caller's data ends. A full ring on a
			 * non-blocking socket is EAGAIN, as the kernel's
			 * sendfile says, never 0 (0 means end of file). */
			if (!off)
				lseek(in, -r, SEEK_CUR);
			return total ? (ssize_t)total : (w == 0 ? -EAGAIN : w);
		}
		if (w == -EAGAIN)
			w = 0;
		if (off)
			*off += w;
		else if (w < r)
			lseek(in, w - r, SEEK_CUR);
		total += (size_t)w;
		if (w < r)
			break;
	}
	return (ssize_t)total;
}

IVS_EXPORT ssize_t sendfile(int out, int in, off_t *off, size_t count)
{
	struct ivs_sock *s, *tcp;
	ssize_t rc;

	ivs_init();
	s = lookup(out, &tcp);
	if (s) {
		rc = ring_sendfile(s, out, in, off, count);
		ivs_sock_put(s);
		return ivs_set_errno(rc) < 0 ? -1 : rc;
	}
	return KERNEL(tcp, ivs_rc.sendfile(out, in, off, count));
}

IVS_EXPORT ssize_t sendfile64(int out, int in, off_t *off, size_t count)
{
	return sendfile(out, in, off, count);
}

/* splice with an accelerated socket on either side: through a bounce buffer
 * (the other side is a pipe, as splice requires). SPLICE_F_NONBLOCK makes
 * the ring side non-blocking, as it does for a socket. */
IVS_EXPORT ssize_t splice(int in, loff_t *off_in, int out, loff_t *off_out, size_t len,
			  unsigned int flags)
{
	static ssize_t (*real_splice)(int, loff_t *, int, loff_t *, size_t, unsigned int);
	static __thread char *buf;
	const size_t bsz = 65536;
	struct ivs_sock *si, *so, *ti, *to;
	struct iovec v;
	ssize_t r, w;
	int fl = (flags & SPLICE_F_NONBLOCK) ? MSG_DONTWAIT : 0;

	ivs_init();
	if (!real_splice)
		real_splice = (ssize_t (*)(int, loff_t *, int, loff_t *, size_t, unsigned int))
			dlsym(RTLD_NEXT, "splice");
	if (!real_splice)
		return ivs_set_errno(-ENOSYS);
	si = lookup(in, &ti);
	so = lookup(out, &to);
	if (!si && !so) {
		r = real_splice(in, off_in, out, off_out, len, flags);
		if (ti || to) {
			int e = errno;

			if (ti)
				ivs_promo_leave(ti);
			if (to)
				ivs_promo_leave(to);
			errno = e;
		}
		return r;
	}
	/* one side accelerated: the other is a pipe, nothing to count */
	if (ti)
		ivs_promo_leave(ti);
	if (to)
		ivs_promo_leave(to);
	if (!buf)
		buf = malloc(bsz);
	if (!buf) {
		r = -ENOMEM;
		goto out;
	}
	if (len > bsz)
		len = bsz;
	if (si) {
		/* socket -> pipe: take no more than the pipe has room for, so
		 * nothing taken from the ring is stranded */
		int cap = ivs_rc.fcntl(out, F_GETPIPE_SZ), used = 0;

		if (cap > 0 && ivs_rc.ioctl(out, FIONREAD, &used) == 0 && used >= 0) {
			size_t room = used < cap ? (size_t)(cap - used) : 0;

			if (room == 0 && fl) {
				r = -EAGAIN;
				goto out;
			}
			if (room && len > room)
				len = room;
		}
		v.iov_base = buf;
		v.iov_len = len;
		r = ivs_recv(si, in, &v, 1, fl);
		if (r == IVS_PASS) {
			ivs_sock_put(si);
			if (so)
				ivs_sock_put(so);
			return real_splice(in, off_in, out, off_out, len, flags);
		}
		for (w = 0; r > 0 && w < r;) {
			ssize_t k = off_out ? pwrite(out, buf + w, (size_t)(r - w), *off_out)
					    : ivs_rc.write(out, buf + w, (size_t)(r - w));

			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0) {
				r = w ? w : -errno;
				break;
			}
			if (off_out)
				*off_out += k;
			w += k;
		}
	} else {
		/* pipe -> socket: never take more from the pipe than we can
		 * place (non-blocking: what the ring has room for) */
		if (fl) {
			/* our tail from the private view, the peer's head checked */
			long used = ivsock_ring_snap_unconsumed(&so->v.tx);
			size_t room = used >= 0 && used < (long)so->v.tx.size ?
				      so->v.tx.size - (size_t)used : 0;

			if (atomic_load(&so->state) == IVS_ST_CONNECTED && room == 0) {
				r = -EAGAIN;
				goto out;
			}
			if (room && len > room)
				len = room;
		}
		r = off_in ? pread(in, buf, len, *off_in) : ivs_rc.read(in, buf, len);
		if (r <= 0) {
			r = r < 0 ? -errno : 0;
			goto out;
		}
		if (off_in)
			*off_in += r;
		for (w = 0; w < r;) {
			ssize_t k;

			v.iov_base = buf + w;
			v.iov_len = (size_t)(r - w);
			k = ivs_send(so, out, &v, 1, MSG_NOSIGNAL);
			if (k == IVS_PASS) {
				k = ivs_rc.send(out, buf + w, (size_t)(r - w), MSG_NOSIGNAL);
				if (k < 0)
					k = -errno;
			}
			if (k == -EINTR)
				continue;
			if (k <= 0) { /* connection failed: what was not sent is lost, as with TCP */
				r = w ? w : k;
				break;
			}
			w += k;
		}
	}
out:
	if (si)
		ivs_sock_put(si);
	if (so)
		ivs_sock_put(so);
	return ivs_set_errno(r) < 0 ? -1 : r;
}
