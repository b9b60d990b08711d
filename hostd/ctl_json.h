/* SPDX-License-Identifier: MIT */
/* JSON views of the daemon's state for the control socket: domains, VMs
 * (directory + daemon bookkeeping) and channels (read from the region). */
#ifndef IVSOCKD_CTL_JSON_H
#define IVSOCKD_CTL_JSON_H

#include <stddef.h>
#include <jansson.h>

json_t *ctl_json_domains(void);
json_t *ctl_json_vms(void);
/* NULL with *status = -ENOENT if no VM has that name. */
json_t *ctl_json_vm_show(const char *name, int *status);
/* Ask both ends of channel "[DOMAIN/]INDEX" to move to TCP. */
json_t *ctl_chan_demote(const char *arg, int *status);
/* "[DOMAIN/]INDEX SIZE": ring -> ring (a demote asking for a SIZE-byte ring
 * after; 0: the next larger class). */
json_t *ctl_chan_promote(const char *arg, int *status);
/* One page of the channel list: arg "" or "FROM" (a cursor the previous
 * page gave as "next"); at most CTL_CHANNELS_PAGE entries. */
#define CTL_CHANNELS_PAGE 2000
json_t *ctl_json_channels(const char *arg, int *status);

/* Copy up to len bytes of in (stops at NUL) to out as valid UTF-8: each byte
 * that does not begin a well-formed sequence becomes U+FFFD. out is always
 * NUL-terminated (outlen >= 3 * len + 1 never truncates). @return bytes. */
size_t ctl_utf8_sanitize(const char *in, size_t len, char *out, size_t outlen);

#endif
