/* SPDX-License-Identifier: MIT */
/*
 * The agent's half of its VM's control mailbox (layout.h struct
 * ivsock_mailbox): one request outstanding at a time, framed with msg.h
 * headers whose seq equals req_seq; the answer is complete when resp_seq ==
 * req_seq. Also the agent heartbeat and the watch on ivsockd's heartbeat.
 * Nothing here relies on a doorbell: the caller polls on a timer.
 */
#ifndef AGENT_MAILBOX_H
#define AGENT_MAILBOX_H

#include <stdbool.h>
#include <stdint.h>

#include "ivsock/layout.h"
#include "ivsock/msg.h"

#define AGENT_DAEMON_SILENT_MS 2000

struct agent_mb {
	struct ivsock_mailbox *mb;   /* our VM's mailbox in the region */
	struct ivsock_superblock *sb;
	uint32_t seq;                /* last req_seq written */
	bool pending;
	uint16_t type;               /* of the pending request */
	uint64_t sent_ms;
	uint64_t hb;                 /* our heartbeat counter */
	/* ivsockd watch */
	uint64_t dhb;                /* last daemon_heartbeat seen */
	uint64_t dhb_ms;             /* when it last moved */
	uint32_t epoch;
	bool daemon_silent;
};

/* Bind to VM vm's mailbox; continues the sequence a previous agent left. */
void agent_mb_init(struct agent_mb *m, struct ivsock_region *rg, uint32_t vm, uint64_t now_ms);

/* Write a request (replaces nothing: -EBUSY while one is pending).
 * @return 0, -EBUSY, -EMSGSIZE. The caller then rings ivsockd. */
int agent_mb_send(struct agent_mb *m, uint16_t type, const void *payload, uint32_t len,
		  uint64_t now_ms);

/* Has the pending request been answered? @return 1 with *status (the
 * reply's 0/-errno), 0 if not yet (or nothing pending), -EPROTO if the
 * answer is malformed (the request is dropped). */
int agent_mb_poll(struct agent_mb *m, int32_t *status);

/* Give up on the pending request (timeout); a late answer is ignored. */
void agent_mb_abandon(struct agent_mb *m);

/* Bump our heartbeat. */
void agent_mb_heartbeat(struct agent_mb *m);

enum { AGENT_DAEMON_NOCHANGE = 0, AGENT_DAEMON_WENT_SILENT, AGENT_DAEMON_CAME_BACK,
       AGENT_DAEMON_RESTARTED };

/* Look at ivsockd's heartbeat and epoch. @return AGENT_DAEMON_* transition. */
int agent_mb_watch_daemon(struct agent_mb *m, uint64_t now_ms);

#endif
