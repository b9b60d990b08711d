// SPDX-License-Identifier: MIT
/* Framing checks for ivsock's own control messages. */
#include <errno.h>
#include <string.h>

#include "ivsock/msg.h"

void ivsock_msg_init(struct ivsock_msg_hdr *h, uint16_t type, uint32_t len, uint32_t seq)
{
	memset(h, 0, sizeof(*h));
	h->magic = IVSOCK_MSG_MAGIC;
	h->version = IVSOCK_MSG_VERSION;
	h->type = type;
	h->len = len;
	h->seq = seq;
}

int ivsock_msg_check(const void *buf, size_t n, uint16_t expect_type, uint32_t min_len)
{
	struct ivsock_msg_hdr h;

	if (!buf || n < sizeof(h) || n > IVSOCK_MSG_MAX)
		return -EMSGSIZE;
	memcpy(&h, buf, sizeof(h));
	if (h.magic != IVSOCK_MSG_MAGIC || h.version != IVSOCK_MSG_VERSION ||
	    h.type == 0 || h.reserved != 0)
		return -EPROTO;
	if ((size_t)h.len != n - sizeof(h))
		return -EMSGSIZE;
	if (expect_type) {
		if (h.type != expect_type)
			return -EBADMSG;
		if (h.len < min_len)
			return -EMSGSIZE;
	}
	return 0;
}
