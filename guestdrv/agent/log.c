// SPDX-License-Identifier: MIT
/* syslog or stderr logging for ivsock-agent. */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "log.h"
#include "util.h"

/* Process-wide by nature (one daemon, one log); set once at start-up. */
static bool log_stderr;
static int log_verbose;

void agent_log_init(bool to_stderr, int verbose)
{
	log_stderr = to_stderr;
	log_verbose = verbose;
	if (!to_stderr)
		openlog("ivsock-agent", LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

void agent_log(int prio, const char *fmt, ...)
{
	va_list ap;

	if (prio == LOG_DEBUG && !log_verbose)
		return;
	va_start(ap, fmt);
	if (log_stderr) {
		struct timespec ts;
		char line[1024];

		clock_gettime(CLOCK_MONOTONIC, &ts);
		vsnprintf(line, sizeof(line), fmt, ap);
		fprintf(stderr, "[%5ld.%03ld] ivsock-agent: %s\n", (long)ts.tv_sec,
			ts.tv_nsec / 1000000, line);
	} else {
		vsyslog(prio, fmt, ap);
	}
	va_end(ap);
}

static unsigned long log_suppressed_total;

bool agent_log_allow(struct agent_ratelimit *rl, int prio)
{
	uint64_t now = agent_now_ms();

	if (prio == LOG_DEBUG && !log_verbose)
		return false;
	if (!rl->start_ms || now - rl->start_ms >= AGENT_RL_WINDOW_MS) {
		if (rl->suppressed)
			agent_log(prio, "(%lu similar lines suppressed in the last %d s)",
				  rl->suppressed, AGENT_RL_WINDOW_MS / 1000);
		rl->start_ms = now ? now : 1;
		rl->n = 0;
		rl->suppressed = 0;
	}
	if (rl->n < AGENT_RL_BURST) {
		rl->n++;
		return true;
	}
	rl->suppressed++;
	log_suppressed_total++;
	return false;
}

unsigned long agent_log_suppressed(void)
{
	return log_suppressed_total;
}
