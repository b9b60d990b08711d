// SPDX-License-Identifier: MIT
/* ivsockd logging backend: syslog plus optional stderr, one level filter. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "log.h"

static int log_fg;
static int log_level = LOG_INFO;

void log_open(int foreground, int level)
{
	log_fg = foreground;
	log_level = level;
	openlog("ivsockd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

void log_set_level(int level)
{
	log_level = level;
}

int log_level_parse(const char *s)
{
	static const struct { const char *n; int v; } t[] = {
		{ "error", LOG_ERR }, { "err", LOG_ERR }, { "warning", LOG_WARNING },
		{ "warn", LOG_WARNING }, { "notice", LOG_NOTICE }, { "info", LOG_INFO },
		{ "debug", LOG_DEBUG },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (!strcasecmp(s, t[i].n))
			return t[i].v;
	return -1;
}

void log_msg(int prio, const char *fmt, ...)
{
	static const char *const tag[] = { "emerg", "alert", "crit", "error",
					   "warning", "notice", "info", "debug" };
	va_list ap;

	if (prio > log_level)
		return;
	va_start(ap, fmt);
	vsyslog(prio, fmt, ap);
	va_end(ap);
	if (log_fg) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		fprintf(stderr, "ivsockd[%ld.%03ld] %s: ", (long)ts.tv_sec,
			ts.tv_nsec / 1000000, tag[prio & 7]);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
}
