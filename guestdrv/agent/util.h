/* SPDX-License-Identifier: MIT */
/* Small helpers shared by the agent's files: monotonic milliseconds. */
#ifndef AGENT_UTIL_H
#define AGENT_UTIL_H

#include <stdint.h>
#include <time.h>

static inline uint64_t agent_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static inline uint64_t agent_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

#endif
