/* SPDX-License-Identifier: MIT */
/* JSON views of the daemon's state for the control socket: domains, VMs
 * (directory + daemon bookkeeping) and channels (read from the region). */
#ifndef IVSOCKD_CTL_JSON_H
#define IVSOCKD_CTL_JSON_H

#include <jansson.h>

json_t *ctl_json_domains(void);
json_t *ctl_json_vms(void);
/* NULL with *status = -ENOENT if no VM has that name. */
json_t *ctl_json_vm_show(const char *name, int *status);
json_t *ctl_json_channels(void);

#endif
