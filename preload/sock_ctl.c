// SPDX-License-Identifier: MIT
/* Control entry points of accelerated sockets: close, dup/dup2/dup3, fcntl
 * (O_NONBLOCK tracking, F_DUPFD*), ioctl (FIONREAD, FIONBIO, SIOCOUTQ),
 * getsockopt(SO_ERROR), setsockopt timeouts, shutdown. */
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <poll.h>
#include <stdarg.h>
#include <sys/ioctl.h>
#include <sys/time.h>

#include "sock_int.h"

/* The process drops fd: forget it, and release at its last fd. */
void ivs_fd_forget(int fd)
{
	struct ivs_sock *s;

	ivs_mux_fd_closed(fd);
	s = ivs_fd_remove(fd);
	if (!s)
		return;
	if (atomic_fetch_sub(&s->nfds, 1) == 1)
		ivs_conn_release(s, fd);
	else if (s->kfd == fd)
		s->kfd = -1; /* another dup remains; found again on its next use */
	ivs_sock_put(s);
}

IVS_EXPORT int close(int fd)
{
	ivs_init();
	if (ivs_fdguard_owned(fd)) /* the shim's own: never open to the program */
		return ivs_set_errno(-EBADF);
	if (__builtin_expect(ivs_fd_lookup(fd) != NULL, 0))
		ivs_fd_forget(fd);
	else
		ivs_mux_fd_closed(fd);
	return ivs_real.close(fd);
}

static int dup_install(int oldfd, int newfd)
{
	struct ivs_sock *s;

	if (newfd < 0)
		return newfd;
	s = ivs_fd_get(oldfd);
	if (s) {
		int err = errno;

		if (ivs_fd_install(newfd, s) < 0)
			ivs_log(IVS_LOG_WARN, "fd %d: dup beyond the table; it bypasses the rings",
				newfd);
		if (s->kfd < 0)
			s->kfd = newfd;
		ivs_sock_put(s);
		errno = err;
	}
	return newfd;
}

IVS_EXPORT int dup(int fd)
{
	ivs_init();
	if (ivs_fdguard_owned(fd))
		return ivs_set_errno(-EBADF);
	return dup_install(fd, ivs_rc.dup(fd));
}

IVS_EXPORT int dup3(int oldfd, int newfd, int flags)
{
	int rc;

	ivs_init();
	if (ivs_fdguard_owned(oldfd))
		return ivs_set_errno(-EBADF);
	if (oldfd == newfd)
		return ivs_rc.dup3(oldfd, newfd, flags);
	if (ivs_fdguard_owned(newfd)) /* ours moves away: the number is the program's */
		ivs_fdguard_evict(newfd);
	if (ivs_fd_lookup(newfd))
		ivs_fd_forget(newfd);
	else
		ivs_mux_fd_closed(newfd);
	rc = ivs_rc.dup3(oldfd, newfd, flags);
	return dup_install(oldfd, rc);
}

IVS_EXPORT int dup2(int oldfd, int newfd)
{
	ivs_init();
	if (ivs_fdguard_owned(oldfd))
		return ivs_set_errno(-EBADF);
	if (oldfd == newfd)
		return ivs_rc.dup2(oldfd, newfd);
	if (ivs_fdguard_owned(newfd))
		ivs_fdguard_evict(newfd);
	if (ivs_fd_lookup(newfd))
		ivs_fd_forget(newfd);
	else
		ivs_mux_fd_closed(newfd);
	return dup_install(oldfd, ivs_rc.dup2(oldfd, newfd));
}

static int do_fcntl(int (*real)(int, int, ...), int fd, int cmd, va_list ap)
{
	long arg = va_arg(ap, long);
	struct ivs_sock *s;
	int rc;

	if (ivs_fdguard_owned(fd))
		return ivs_set_errno(-EBADF);
	rc = real(fd, cmd, arg);
	if (rc >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC))
		rc = ivs_fdguard_dupfd_fix(fd, cmd, arg, rc);
	if (rc < 0 || !ivs_fd_lookup(fd))
		return rc;
	switch (cmd) {
	case F_DUPFD:
	case F_DUPFD_CLOEXEC:
		return dup_install(fd, rc);
	case F_SETFL:
		s = ivs_fd_get(fd);
		if (s) {
			atomic_store(&s->nonblock, (arg & O_NONBLOCK) != 0);
			ivs_sock_put(s);
		}
		break;
	}
	return rc;
}

IVS_EXPORT int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	int rc;

	ivs_init();
	va_start(ap, cmd);
	rc = do_fcntl(ivs_rc.fcntl, fd, cmd, ap);
	va_end(ap);
	return rc;
}

IVS_EXPORT int fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	int rc;

	ivs_init();
	va_start(ap, cmd);
	rc = do_fcntl(ivs_rc.fcntl64, fd, cmd, ap);
	va_end(ap);
	return rc;
}

IVS_EXPORT int ioctl(int fd, unsigned long req, ...)
{
	struct ivs_sock *s;
	va_list ap;
	void *arg;
	int rc = 0;

	ivs_init();
	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (__builtin_expect(!ivs_fd_lookup(fd), 1))
		return ivs_rc.ioctl(fd, req, arg);
	s = ivs_sock_get(fd);
	if (!s)
		return ivs_rc.ioctl(fd, req, arg);
	switch (req) {
	case FIONREAD: { /* == SIOCINQ; our head from the private view */
		long n = ivsock_ring_snap_readable(&s->v.rx);
		bool conn = atomic_load(&s->state) == IVS_ST_CONNECTED;
		int k, pr;

		/* promoted: the TCP bytes before the peer's tx_start, then
		 * the ring's (a count of the kernel's queue alone said 0 with
		 * the ring full once the TCP part was read) */
		if (conn && atomic_load(&s->prx) && (pr = ivs_promo_inq(s, fd, &k)) != 1) {
			if (pr < 0) {
				errno = -pr;
				rc = -1;
			} else {
				*(int *)arg = k;
			}
			break;
		}
		/* the rest of the stream is on the kernel socket (switched,
		 * or released by another thread since we looked up the
		 * socket: PLAIN now) */
		if ((conn && n == 0 && ivs_rx_on_tcp(s)) || atomic_load(&s->state) == IVS_ST_PLAIN ||
		    atomic_load(&s->let_go)) {
			rc = ivs_rc.ioctl(fd, req, arg);
			break;
		}
		*(int *)arg = n < 0 ? 0 : (int)n;
		break;
	}
	case SIOCOUTQ: { /* our tail from the private view */
		long n = ivsock_ring_snap_unconsumed(&s->v.tx);

		if (atomic_load(&s->state) == IVS_ST_CONNECTED &&
		    (atomic_load(&s->tx_tcp) || atomic_load(&s->ptx)) && n == 0) {
			rc = ivs_rc.ioctl(fd, req, arg);
			break;
		}

		*(int *)arg = n < 0 ? 0 : (int)n;
		break;
	}
	case FIONBIO:
		rc = ivs_rc.ioctl(fd, req, arg);
		if (rc == 0)
			atomic_store(&s->nonblock, *(int *)arg != 0);
		break;
	default:
		rc = ivs_rc.ioctl(fd, req, arg);
	}
	ivs_sock_put(s);
	return rc;
}

IVS_EXPORT int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	struct ivs_sock *s;
	int err;

	ivs_init();
	if (__builtin_expect(!ivs_fd_lookup(fd), 1) || level != SOL_SOCKET || name != SO_ERROR ||
	    !val || !len || *len < sizeof(int))
		return ivs_rc.getsockopt(fd, level, name, val, len);
	s = ivs_sock_get(fd);
	if (!s)
		return ivs_rc.getsockopt(fd, level, name, val, len);
	err = atomic_exchange(&s->so_error, 0);
	/* A reset is pending (as with TCP's RST) when the peer aborted with
	 * bytes of ours unread; reported once, like the kernel's sk_err. */
	if (!err && atomic_load(&s->state) == IVS_ST_CONNECTED && !s->reset_told &&
	    (ivsock_ring_peer_flags(&s->v.rx) & IVSOCK_RING_RESET) &&
	    ivsock_ring_snap_unconsumed(&s->v.tx) != 0 &&
	    !atomic_load(&s->closed)) {
		s->reset_told = true;
		err = ECONNRESET;
	}
	/* A revoked channel is a reset too (once). */
	if (!err && atomic_load(&s->state) == IVS_ST_CONNECTED && !s->reset_told &&
	    !atomic_load(&s->closed) && ivs_chan_revoked(s)) {
		s->reset_told = true;
		err = ECONNRESET;
	}
	ivs_sock_put(s);
	if (!err)
		return ivs_rc.getsockopt(fd, level, name, val, len);
	*(int *)val = err;
	*len = sizeof(int);
	return 0;
}

IVS_EXPORT int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	struct ivs_sock *s;
	int rc;

	ivs_init();
	rc = ivs_rc.setsockopt(fd, level, name, val, len);
	if (rc < 0 || level != SOL_SOCKET || (name != SO_RCVTIMEO && name != SO_SNDTIMEO) ||
	    !ivs_fd_lookup(fd) || len < sizeof(struct timeval))
		return rc;
	s = ivs_fd_get(fd);
	if (s) {
		const struct timeval *tv = val;
		int64_t ms = (int64_t)tv->tv_sec * 1000 + (tv->tv_usec + 999) / 1000;

		if (name == SO_RCVTIMEO)
			s->rcvtimeo_ms = ms;
		else
			s->sndtimeo_ms = ms;
		ivs_sock_put(s);
	}
	return rc;
}

IVS_EXPORT int shutdown(int fd, int how)
{
	struct ivs_sock *s;
	int st;

	ivs_init();
	if (__builtin_expect(!ivs_fd_lookup(fd), 1))
		return ivs_rc.shutdown(fd, how);
	s = ivs_sock_get(fd);
	if (!s)
		return ivs_rc.shutdown(fd, how);
	if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR) {
		ivs_sock_put(s);
		return ivs_set_errno(-EINVAL);
	}
	/* The peer's end of stream reached us through the ring; its FIN may
	 * still be in flight to our kernel socket, whose state decides what
	 * shutdown() returns (ENOTCONN once both sides are closed). */
	if (atomic_load(&s->state) == IVS_ST_CONNECTED &&
	    (ivsock_load_acquire(&s->v.rx.p->prod_flags) & IVSOCK_RING_EOF)) {
		struct pollfd p = { .fd = fd, .events = POLLRDHUP };

		ivs_real.poll(&p, 1, 100);
	}
	if (how != SHUT_WR)
		s->shut_rd = true;
	if (how != SHUT_RD) {
		pthread_mutex_lock(&s->tx_lock);
		st = atomic_load(&s->state);
		if (st != IVS_ST_PLAIN && !s->shut_wr) {
			ivs_sock_refresh(s);
			ivs_flush_tx_count(s);
			ivsock_ring_close_write(&s->v.tx, false);
			s->shut_wr = true;
			if (ivs_conn_check_attached(s) == 0 && atomic_load(&s->state) == IVS_ST_CONNECTED)
				ivs_ring_peer(s);
		}
		pthread_mutex_unlock(&s->tx_lock);
		/* While OFFERED the kernel FIN waits: a fallback may still have
		 * bytes to send first (ivs_conn_fallback sends it). */
		if (atomic_load(&s->state) == IVS_ST_OFFERED) {
			ivs_sock_put(s);
			return how == SHUT_RDWR ? ivs_rc.shutdown(fd, SHUT_RD) : 0;
		}
		if (atomic_exchange(&s->kshut_done, 1) && how == SHUT_WR) {
			ivs_sock_put(s); /* already passed on when the peer attached */
			return 0;
		}
	}
	ivs_sock_put(s);
	return ivs_rc.shutdown(fd, how);
}
