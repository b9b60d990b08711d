/* SPDX-License-Identifier: MIT */
/* Logging for ivsock-agent: syslog (journald) as a daemon, stderr in the
 * foreground. */
#ifndef AGENT_LOG_H
#define AGENT_LOG_H

#include <stdbool.h>
#include <syslog.h>

void agent_log_init(bool to_stderr, int verbose);
void agent_log(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...)   agent_log(LOG_ERR, __VA_ARGS__)
#define log_warn(...)  agent_log(LOG_WARNING, __VA_ARGS__)
#define log_info(...)  agent_log(LOG_INFO, __VA_ARGS__)
#define log_debug(...) agent_log(LOG_DEBUG, __VA_ARGS__)

#endif
