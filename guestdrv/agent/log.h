/* SPDX-License-Identifier: MIT */
/* Logging for ivsock-agent: syslog (journald) as a daemon, stderr in the
 * foreground. */
#ifndef AGENT_LOG_H
#define AGENT_LOG_H

#include <stdbool.h>
#include <stdint.h>
#include <syslog.h>

void agent_log_init(bool to_stderr, int verbose);
void agent_log(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...)   agent_log(LOG_ERR, __VA_ARGS__)
#define log_warn(...)  agent_log(LOG_WARNING, __VA_ARGS__)
#define log_info(...)  agent_log(LOG_INFO, __VA_ARGS__)
#define log_debug(...) agent_log(LOG_DEBUG, __VA_ARGS__)

/*
 * Rate limiting for lines a client can provoke (refusals, accept errors,
 * malformed requests): per call site, at most AGENT_RL_BURST lines per
 * AGENT_RL_WINDOW_MS, then one "N similar lines suppressed" when the next
 * window opens. A flood costs at most (AGENT_RL_BURST + 1) lines per window
 * and site.
 */
#define AGENT_RL_BURST     5
#define AGENT_RL_WINDOW_MS 10000

struct agent_ratelimit {
	uint64_t start_ms;
	unsigned n;
	unsigned long suppressed;
};

/* May this site log now? (Logs the suppression count of the last window.) */
bool agent_log_allow(struct agent_ratelimit *rl, int prio);
/* Lines suppressed so far, all sites (STATUS). */
unsigned long agent_log_suppressed(void);

#define log_rl(prio, ...)                                                \
	do {                                                              \
		static struct agent_ratelimit rl_;                        \
		if (agent_log_allow(&rl_, (prio)))                        \
			agent_log((prio), __VA_ARGS__);                   \
	} while (0)

#endif
