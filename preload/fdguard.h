/* SPDX-License-Identifier: MIT */
/*
 * The shim's own file descriptors (sock_fdguard.c): every fd libivsock.so
 * holds for itself (log, agent socket, doorbell and wake eventfds, device
 * fd) is moved to a high number (counting down from the top of
 * RLIMIT_NOFILE, at most 4096) and recorded here, so that the program's
 * close/close_range/closefrom/dup/dup2/dup3/fcntl never touch it: to the
 * program such a number looks never opened (EBADF), and when the program
 * dup2()s onto it, the shim's fd moves away first and the program gets the
 * number. The protocol code linked into the shim reaches libc through
 * wrappers (--wrap, see build.mk) that register what it creates and
 * translate numbers that moved.
 */
#ifndef IVS_FDGUARD_H
#define IVS_FDGUARD_H

#include <stdatomic.h>
#include <stdbool.h>

extern _Atomic int ivs_fdguard_lo; /* lowest fd the shim holds (INT_MAX: none) */
extern _Atomic int ivs_fdguard_moved; /* non-zero once any shim fd moved */

bool ivs_fdguard_owned_slow(int fd);

/* Is fd one of the shim's own (not the program's)? One load for low fds. */
static inline bool ivs_fdguard_owned(int fd)
{
	return __builtin_expect(fd >= atomic_load_explicit(&ivs_fdguard_lo, memory_order_relaxed), 0) &&
	       ivs_fdguard_owned_slow(fd);
}

/* Move fd high (close-on-exec) and record it; *ref (may be NULL) is a
 * variable holding the number, rewritten whenever the fd moves again.
 * @return the fd's number now (fd itself if it could not move). */
int ivs_fdguard_take(int fd, int *ref);
/* Record an already high/placed fd without moving it. */
void ivs_fdguard_keep(int fd, int *ref);
/* Add a variable to rewrite when fd moves (readers of the number). */
void ivs_fdguard_ref(int fd, int *ref);
/* Remember what fd refers to (device, inode): ivs_fdguard_verify() then
 * checks it before use, against a raw syscall that replaced it. */
void ivs_fdguard_ident(int fd);
/* Still the file recorded? On mismatch the number is dropped (never
 * written to, never closed by us again) and false is returned. */
bool ivs_fdguard_verify(int fd);
/* The current number of the shim's fd once known as fd (it may have
 * moved; -1 if it was lost). Cheap while nothing ever moved. */
int ivs_fdguard_fd(int fd);
/* Close the shim's fd once known as fd (translated) and forget it. */
int ivs_fdguard_close(int fd);
/* The program wants number fd, which is ours: move ours away first. */
void ivs_fdguard_evict(int fd);
/* F_DUPFD/F_DUPFD_CLOEXEC(fd, minfd) returned r: return what the kernel
 * would have returned without the shim's fds in the way. */
int ivs_fdguard_dupfd_fix(int fd, int cmd, long minfd, int r);
/* libc close() for the shim's internal use (ivs_real.close): forgets a
 * recorded fd closed by its current number. */
int ivs_fdguard_real_close(int fd);

#endif
