// SPDX-License-Identifier: MIT
/*
 * Fuzzes the agent's reading of ivsockd's mailbox answers (agent_mb_poll in
 * guestdrv/agent/mailbox.c): the agent sends a request, the fuzzer writes
 * resp_len, resp and resp_seq in the shared mailbox, and the agent must
 * accept only a well-formed answer to its own request.
 */
#include <errno.h>

#include "../../guestdrv/agent/mailbox.h"
#include "fuzz.h"

#define REGION_SIZE 65536U

static uint8_t *region;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	uint8_t mode = fuzz_u8(&in);
	struct ivsock_region_params pr;
	struct ivsock_region rg;
	struct ivsock_mb_register reg;
	struct agent_mb m;
	struct ivsock_mailbox *mb;
	uint16_t type = mode & 1 ? IVSOCK_MB_REGISTER : IVSOCK_MB_PING;
	const uint8_t *p;
	size_t got;
	int32_t status = 12345;
	int rc;

	if (!region) {
		region = aligned_alloc(4096, REGION_SIZE);
		FUZZ_ASSERT(region);
	}
	ivsock_region_params_single(&pr, 4096);
	pr.vm_cap = 2;
	pr.listener_cap = 4;
	pr.offer_cap = 4;
	pr.channel_cap = 4;
	FUZZ_ASSERT(ivsock_region_format(&rg, region, REGION_SIZE, &pr) == 0);
	agent_mb_init(&m, &rg, 1, 0);
	memset(&reg, 0, sizeof(reg));
	FUZZ_ASSERT(agent_mb_send(&m, type, type == IVSOCK_MB_REGISTER ? &reg : NULL,
				  type == IVSOCK_MB_REGISTER ? sizeof(reg) : 0, 0) == 0);
	FUZZ_ASSERT(agent_mb_send(&m, type, NULL, 0, 0) == -EBUSY);

	/* The daemon's half, as the fuzzer writes it. */
	mb = &rg.mailboxes[1];
	mb->resp_len = (mode & 2) ? fuzz_u32(&in) : (uint32_t)in.n;
	p = fuzz_bytes(&in, IVSOCK_MAILBOX_MSG_MAX, &got);
	memcpy(mb->resp, p, got);
	ivsock_store_release(&mb->resp_seq, (mode & 4) ? fuzz_u32(&in) : m.seq);

	rc = agent_mb_poll(&m, &status);
	FUZZ_ASSERT(rc == 0 || rc == 1 || rc == -EPROTO);
	if (rc == 1) {
		struct ivsock_msg_hdr h;

		memcpy(&h, mb->resp, sizeof(h));
		FUZZ_ASSERT(status <= 0 && status == h.status);
		FUZZ_ASSERT(h.type == type && h.seq == m.seq);
		FUZZ_ASSERT(mb->resp_len == sizeof(h) + h.len);
	} else {
		FUZZ_ASSERT(status == 12345);
	}
	/* Answered or dropped: nothing pending either way, except "not yet". */
	if (rc != 0)
		FUZZ_ASSERT(agent_mb_poll(&m, &status) == 0);
	return 0;
}
