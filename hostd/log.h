/* SPDX-License-Identifier: MIT */
/* ivsockd logging: syslog (journald picks it up) always, stderr as well when
 * running in the foreground. */
#ifndef IVSOCKD_LOG_H
#define IVSOCKD_LOG_H

#include <syslog.h>

void log_open(int foreground, int level);
void log_set_level(int level);
/* "error", "warning", "notice", "info", "debug" -> LOG_*; -1 if unknown. */
int log_level_parse(const char *s);
void log_msg(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...)    log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...)   log_msg(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_info(...)   log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)  log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
