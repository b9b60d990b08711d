/* SPDX-License-Identifier: MIT */
/*
 * ivsockctl <-> ivsockd control protocol over a UNIX stream socket: each
 * request and reply is a struct ivsock_msg_hdr (msg.h) followed by len
 * payload bytes. Requests carry an optional argument (a VM name); replies
 * echo type and seq, carry status (0 or -errno) and a JSON document.
 */
#ifndef IVSOCKD_CTL_PROTO_H
#define IVSOCKD_CTL_PROTO_H

#include <errno.h>
#include <string.h>

#include "ivsock/msg.h"

enum {
	IVSOCK_CTL_DOMAIN_LIST = 0x101, /* -> {"domains": [...]} */
	IVSOCK_CTL_VM_LIST     = 0x102, /* -> {"vms": [...]} */
	IVSOCK_CTL_VM_SHOW     = 0x103, /* payload: VM name -> {"vm": {...}} */
	IVSOCK_CTL_CHANNELS    = 0x104, /* -> {"channels": [...]} */
	IVSOCK_CTL_CHAN_DEMOTE = 0x105, /* payload: "[DOMAIN/]INDEX" -> {"demoted": {...}};
					 * root only (-EPERM) */
	IVSOCK_CTL_CHAN_PROMOTE = 0x106, /* payload: "[DOMAIN/]INDEX SIZE" (SIZE 0: the
					  * next larger class) -> {"promoted": {...}};
					  * root only */
};

#define IVSOCK_CTL_REQ_MAX   4096U          /* request payload bytes */
#define IVSOCK_CTL_REPLY_MAX (16U << 20)    /* reply payload bytes */

/* Header checks for a stream (the payload follows separately).
 * @return 0 or -EPROTO / -EMSGSIZE. */
static inline int ivsock_ctl_hdr_check(const struct ivsock_msg_hdr *h, uint32_t max_len)
{
	if (h->magic != IVSOCK_MSG_MAGIC || h->version != IVSOCK_MSG_VERSION ||
	    h->type == 0 || h->reserved != 0)
		return -EPROTO;
	if (h->len > max_len)
		return -EMSGSIZE;
	return 0;
}

#endif
