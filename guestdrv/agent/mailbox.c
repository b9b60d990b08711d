// SPDX-License-Identifier: MIT
/* Agent side of the VM control mailbox, heartbeats, and the daemon watch. */
#include <errno.h>
#include <string.h>

#include "mailbox.h"

void agent_mb_init(struct agent_mb *m, struct ivsock_region *rg, uint32_t vm, uint64_t now_ms)
{
	memset(m, 0, sizeof(*m));
	m->mb = &rg->mailboxes[vm];
	m->sb = rg->sb;
	/* Our own words: a previous agent of this VM may have left them. */
	m->seq = ivsock_load_relaxed(&m->mb->req_seq);
	m->hb = ivsock_load_relaxed(&m->mb->agent_heartbeat);
	m->dhb = ivsock_load_acquire(&m->sb->daemon_heartbeat);
	m->epoch = ivsock_load_acquire(&m->sb->daemon_epoch);
	m->dhb_ms = now_ms;
}

int agent_mb_send(struct agent_mb *m, uint16_t type, const void *payload, uint32_t len,
		  uint64_t now_ms)
{
	struct ivsock_msg_hdr h;

	if (m->pending)
		return -EBUSY;
	if (sizeof(h) + len > IVSOCK_MAILBOX_MSG_MAX)
		return -EMSGSIZE;
	m->seq++;
	if (m->seq == 0)
		m->seq = 1;
	ivsock_msg_init(&h, type, len, m->seq);
	memcpy(m->mb->req, &h, sizeof(h));
	if (len)
		memcpy(m->mb->req + sizeof(h), payload, len);
	m->mb->req_len = (uint32_t)(sizeof(h) + len);
	/* Pairs with ivsockd's acquire load of req_seq before it reads req. */
	ivsock_store_release(&m->mb->req_seq, m->seq);
	m->pending = true;
	m->type = type;
	m->sent_ms = now_ms;
	return 0;
}

int agent_mb_poll(struct agent_mb *m, int32_t *status)
{
	uint8_t buf[IVSOCK_MAILBOX_MSG_MAX];
	struct ivsock_msg_hdr h;
	uint32_t len;

	if (!m->pending)
		return 0;
	/* Pairs with ivsockd's release store of resp_seq after writing resp. */
	if (ivsock_load_acquire(&m->mb->resp_seq) != m->seq)
		return 0;
	m->pending = false;
	len = m->mb->resp_len; /* read once, then validated */
	if (len < sizeof(h) || len > IVSOCK_MAILBOX_MSG_MAX)
		return -EPROTO;
	memcpy(buf, m->mb->resp, len);
	if (ivsock_msg_check(buf, len, m->type, 0) < 0)
		return -EPROTO;
	memcpy(&h, buf, sizeof(h));
	if (h.seq != m->seq || h.status > 0)
		return -EPROTO;
	*status = h.status;
	return 1;
}

void agent_mb_abandon(struct agent_mb *m)
{
	m->pending = false;
}

void agent_mb_heartbeat(struct agent_mb *m)
{
	/* Single writer; relaxed is enough for a liveness counter. */
	ivsock_store_relaxed(&m->mb->agent_heartbeat, ++m->hb);
}

int agent_mb_watch_daemon(struct agent_mb *m, uint64_t now_ms)
{
	uint64_t hb = ivsock_load_acquire(&m->sb->daemon_heartbeat);
	uint32_t epoch = ivsock_load_acquire(&m->sb->daemon_epoch);

	if (epoch != m->epoch) {
		m->epoch = epoch;
		m->dhb = hb;
		m->dhb_ms = now_ms;
		m->daemon_silent = false;
		return AGENT_DAEMON_RESTARTED;
	}
	if (hb != m->dhb) {
		m->dhb = hb;
		m->dhb_ms = now_ms;
		if (m->daemon_silent) {
			m->daemon_silent = false;
			return AGENT_DAEMON_CAME_BACK;
		}
		return AGENT_DAEMON_NOCHANGE;
	}
	if (!m->daemon_silent && now_ms - m->dhb_ms >= AGENT_DAEMON_SILENT_MS) {
		m->daemon_silent = true;
		return AGENT_DAEMON_WENT_SILENT;
	}
	return AGENT_DAEMON_NOCHANGE;
}
