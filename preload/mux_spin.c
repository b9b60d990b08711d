// SPDX-License-Identifier: MIT
/* Adaptive spin policy shared by poll/select (mux_poll.c) and epoll
 * (mux_epoll.c); each keeps its own per-thread state. */
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>

#include "ivsock/barrier.h"
#include "mux.h"

uint64_t mspin_budget(struct mux_spin *st, uint64_t max)
{
	if (st->budget == UINT32_MAX || st->budget > max)
		st->budget = (uint32_t)max;
	st->probing = false;
	if ((++st->waits & st->every) == 0) {
		st->probing = st->budget < max;
		return max;
	}
	return st->budget;
}

void mspin_end(struct mux_spin *st, uint64_t max, bool won, uint64_t waited)
{
	uint64_t b = (uint64_t)st->budget * 2 + 1000;

	if (b < waited * 2) /* room for twice this wait: a probe's win sticks */
		b = waited * 2;

	if (st->probing) {
		st->probing = false;
		if (won)
			st->every = 63;
		else if (st->every < 1023)
			st->every = st->every * 2 + 1;
	}
	if (!won) {
		st->budget /= 2;
		return;
	}
	st->budget = (uint32_t)(b > max ? max : b);
}

static long mspin_nivcsw(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_THREAD, &ru) < 0)
		return -1;
	return ru.ru_nivcsw;
}

/* One pause of a spin of len ns ending at end; *csw: the involuntary
 * context switches at the first yield (-1 before). */
void mspin_pause(uint64_t now, uint64_t end, uint64_t len, long *csw)
{
	ivsock_cpu_relax();
	if (end - now >= len / 2)
		return;
	if (*csw < 0)
		*csw = mspin_nivcsw();
	sched_yield();
}

/* Did the spin win: data, and no other task ran on our CPU meanwhile? */
bool mspin_won(bool got, long csw)
{
	return got && (csw < 0 || mspin_nivcsw() == csw);
}
