// SPDX-License-Identifier: MIT
/* The real libc entry points behind every interposed symbol, resolved once
 * with dlsym(RTLD_NEXT) under pthread_once: safe from any thread and before
 * our constructors (another library's constructor may call socket()). */
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>

#include "sock_int.h"

struct ivs_real ivs_real;
struct ivs_real_core ivs_rc;
extern int (*ivs_libc_close)(int);
_Atomic int ivs_real_ready;

static pthread_once_t real_once = PTHREAD_ONCE_INIT;

#define R(tbl, name) (tbl).name = (__typeof__((tbl).name))dlsym(RTLD_NEXT, #name)

static void resolve(void)
{
	R(ivs_real, socket);
	R(ivs_real, close);
	R(ivs_real, poll);
	R(ivs_real, ppoll);
	R(ivs_real, select);
	R(ivs_real, pselect);
	R(ivs_real, epoll_create);
	R(ivs_real, epoll_create1);
	R(ivs_real, epoll_ctl);
	R(ivs_real, epoll_wait);
	R(ivs_real, epoll_pwait);
	R(ivs_real, epoll_pwait2);

	R(ivs_rc, read);
	R(ivs_rc, write);
	R(ivs_rc, readv);
	R(ivs_rc, writev);
	R(ivs_rc, recv);
	R(ivs_rc, send);
	R(ivs_rc, recvfrom);
	R(ivs_rc, sendto);
	R(ivs_rc, recvmsg);
	R(ivs_rc, sendmsg);
	R(ivs_rc, sendfile);
	R(ivs_rc, sendfile64);
	R(ivs_rc, connect);
	R(ivs_rc, bind);
	R(ivs_rc, listen);
	R(ivs_rc, accept);
	R(ivs_rc, accept4);
	R(ivs_rc, shutdown);
	R(ivs_rc, getsockopt);
	R(ivs_rc, setsockopt);
	R(ivs_rc, ioctl);
	R(ivs_rc, fcntl);
	R(ivs_rc, fcntl64);
	R(ivs_rc, dup);
	R(ivs_rc, dup2);
	R(ivs_rc, dup3);
	R(ivs_rc, fork);
	R(ivs_rc, execve);
	R(ivs_rc, sigaction);
	if (!ivs_rc.fcntl64)
		ivs_rc.fcntl64 = ivs_rc.fcntl;
	if (!ivs_rc.sendfile64)
		ivs_rc.sendfile64 = ivs_rc.sendfile;
	/* The shim's internal closes forget the fds it recorded as its own
	 * (sock_fdguard.c); the program's close() checks first. */
	ivs_libc_close = ivs_real.close;
	ivs_real.close = ivs_fdguard_real_close;
	ivs_config_load();
	atomic_store_explicit(&ivs_real_ready, 1, memory_order_release);
}

void ivs_real_init(void)
{
	pthread_once(&real_once, resolve);
}
