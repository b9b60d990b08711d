// SPDX-License-Identifier: MIT
/* Unit tests of the agent's mailbox half (mailbox.c) against a formatted
 * region, playing ivsockd's part by hand, including hostile answers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../mailbox.h"

#define REGION (4u << 20)

struct fx {
	void *mem;
	struct ivsock_region rg;
	struct agent_mb m;
};

static int setup(void **state)
{
	struct ivsock_region_params p;
	struct fx *f = calloc(1, sizeof(*f));

	ivsock_region_params_single(&p, 4096);
	p.vm_cap = 4;
	p.channel_cap = 16;
	p.listener_cap = 16;
	p.offer_cap = 64;
	f->mem = aligned_alloc(4096, REGION);
	assert_int_equal(ivsock_region_format(&f->rg, f->mem, REGION, &p), 0);
	agent_mb_init(&f->m, &f->rg, 2, 1000);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	free(f->mem);
	free(f);
	return 0;
}

/* ivsockd's side: answer the current request with status. */
static void daemon_answer(struct fx *f, int32_t status, uint32_t seq_in_hdr, uint16_t type)
{
	struct ivsock_mailbox *mb = &f->rg.mailboxes[2];
	struct ivsock_msg_hdr h;

	ivsock_msg_init(&h, type, 0, seq_in_hdr);
	h.status = status;
	memcpy(mb->resp, &h, sizeof(h));
	mb->resp_len = sizeof(h);
	ivsock_store_release(&mb->resp_seq, ivsock_load_acquire(&mb->req_seq));
}

static void test_register_roundtrip(void **state)
{
	struct fx *f = *state;
	struct ivsock_mailbox *mb = &f->rg.mailboxes[2];
	struct ivsock_mb_register r = { .agent_version = 1, .naddrs = 1 };
	struct ivsock_msg_hdr h;
	int32_t st = 99;

	assert_int_equal(agent_mb_send(&f->m, IVSOCK_MB_REGISTER, &r, sizeof(r), 1000), 0);
	assert_int_equal(agent_mb_send(&f->m, IVSOCK_MB_PING, NULL, 0, 1000), -EBUSY);
	/* What ivsockd reads: a framed message whose seq is req_seq. */
	assert_int_equal(mb->req_len, sizeof(h) + sizeof(r));
	assert_int_equal(ivsock_msg_check(mb->req, mb->req_len, IVSOCK_MB_REGISTER, sizeof(r)), 0);
	memcpy(&h, mb->req, sizeof(h));
	assert_int_equal(h.seq, ivsock_load_acquire(&mb->req_seq));
	assert_int_equal(agent_mb_poll(&f->m, &st), 0); /* not answered yet */
	daemon_answer(f, 0, h.seq, IVSOCK_MB_REGISTER);
	assert_int_equal(agent_mb_poll(&f->m, &st), 1);
	assert_int_equal(st, 0);
	assert_int_equal(agent_mb_poll(&f->m, &st), 0); /* nothing pending */
	/* Next request, refused. */
	assert_int_equal(agent_mb_send(&f->m, IVSOCK_MB_REGISTER, &r, sizeof(r), 1100), 0);
	daemon_answer(f, -EADDRINUSE, h.seq + 1, IVSOCK_MB_REGISTER);
	assert_int_equal(agent_mb_poll(&f->m, &st), 1);
	assert_int_equal(st, -EADDRINUSE);
}

static void test_hostile_answers(void **state)
{
	struct fx *f = *state;
	struct ivsock_mailbox *mb = &f->rg.mailboxes[2];
	int32_t st;

	/* Wrong seq inside the header. */
	assert_int_equal(agent_mb_send(&f->m, IVSOCK_MB_PING, NULL, 0, 0), 0);
	daemon_answer(f, 0, 12345, IVSOCK_MB_PING);
	assert_int_equal(agent_mb_poll(&f->m, &st), -EPROTO);
	/* Huge resp_len. */
	assert_int_equal(agent_mb_send(&f->m, IVSOCK_MB_PING, NULL, 0, 0), 0);
	daemon_answer(f, 0, f->m.seq, IVSOCK_MB_PING);
	mb->resp_len = 0xffffffffu;
	assert_int_equal(agent_mb_poll(&f->m, &st), -EPROTO);
	/* Wrong type; then a positive status. */
	assert_int_equal(agent_mb_send(&f->m, IVSOCK_MB_PING, NULL, 0, 0), 0);
	daemon_answer(f, 0, f->m.seq, IVSOCK_MB_REGISTER);
	assert_int_equal(agent_mb_poll(&f->m, &st), -EPROTO);
	assert_int_equal(agent_mb_send(&f->m, IVSOCK_MB_PING, NULL, 0, 0), 0);
	daemon_answer(f, 7, f->m.seq, IVSOCK_MB_PING);
	assert_int_equal(agent_mb_poll(&f->m, &st), -EPROTO);
	/* Oversized request refused locally. */
	assert_int_equal(agent_mb_send(&f->m, IVSOCK_MB_PING, mb, IVSOCK_MAILBOX_MSG_MAX, 0),
			 -EMSGSIZE);
}

static void test_heartbeat_and_daemon_watch(void **state)
{
	struct fx *f = *state;
	struct ivsock_superblock *sb = f->rg.sb;
	uint64_t hb0 = ivsock_load_relaxed(&f->rg.mailboxes[2].agent_heartbeat);

	agent_mb_heartbeat(&f->m);
	agent_mb_heartbeat(&f->m);
	assert_int_equal(ivsock_load_relaxed(&f->rg.mailboxes[2].agent_heartbeat), hb0 + 2);

	assert_int_equal(agent_mb_watch_daemon(&f->m, 1500), AGENT_DAEMON_NOCHANGE);
	assert_int_equal(agent_mb_watch_daemon(&f->m, 1000 + AGENT_DAEMON_SILENT_MS),
			 AGENT_DAEMON_WENT_SILENT);
	assert_int_equal(agent_mb_watch_daemon(&f->m, 9000), AGENT_DAEMON_NOCHANGE);
	ivsock_store_release(&sb->daemon_heartbeat, ivsock_load_relaxed(&sb->daemon_heartbeat) + 1);
	assert_int_equal(agent_mb_watch_daemon(&f->m, 9100), AGENT_DAEMON_CAME_BACK);
	ivsock_store_release(&sb->daemon_epoch, ivsock_load_relaxed(&sb->daemon_epoch) + 1);
	assert_int_equal(agent_mb_watch_daemon(&f->m, 9200), AGENT_DAEMON_RESTARTED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_register_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_answers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_heartbeat_and_daemon_watch, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
