// SPDX-License-Identifier: MIT
/* The daemon singleton, the monotonic clock and epoll registration helpers
 * shared by every module. */
#include <errno.h>
#include <time.h>
#include <sys/epoll.h>

#include "ivsockd.h"

struct daemon *g_daemon;

uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int ev_add(struct evsrc *src, uint32_t events)
{
	struct epoll_event e = { .events = events, .data.ptr = src };

	return epoll_ctl(g_daemon->epfd, EPOLL_CTL_ADD, src->fd, &e) < 0 ? -errno : 0;
}

int ev_mod(struct evsrc *src, uint32_t events)
{
	struct epoll_event e = { .events = events, .data.ptr = src };

	return epoll_ctl(g_daemon->epfd, EPOLL_CTL_MOD, src->fd, &e) < 0 ? -errno : 0;
}

void ev_del(struct evsrc *src)
{
	if (src->fd >= 0)
		epoll_ctl(g_daemon->epfd, EPOLL_CTL_DEL, src->fd, NULL);
}
