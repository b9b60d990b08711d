// SPDX-License-Identifier: MIT
/*
 * Fuzzes ivsockd's handling of a VM's mailbox request (hostd/mailbox.c,
 * reached through mailbox_serve_client, the client whose doorbell rang): a domain with a formatted region and one
 * live client, fuzzed req_len and req bytes (REGISTER payloads, addresses,
 * hostnames against an allow list), then checks the answer the daemon
 * publishes and the directory entry it wrote.
 */
#include <errno.h>
#include <arpa/inet.h>

#include "ivsock/directory.h"
#include "ivsock/msg.h"
#include "../../hostd/ivsockd.h"
#include "../../hostd/log.h"
#include "fuzz.h"

#define REGION_SIZE 65536U

static uint8_t *region;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	uint8_t mode = fuzz_u8(&in);
	struct ivsock_region_params pr;
	struct vmslot slots[2];
	struct domain d;
	struct client c;
	struct ivsock_mailbox *mb;
	struct ivsock_addr taken;
	struct ivsock_vm_info info;
	struct ivsock_msg_hdr h;
	uint32_t len, seq = 1 + fuzz_u8(&in);
	size_t got;
	const uint8_t *p;

	if (!region) {
		region = aligned_alloc(4096, REGION_SIZE);
		FUZZ_ASSERT(region);
		log_set_level(LOG_EMERG);
	}
	memset(&d, 0, sizeof(d));
	memset(&c, 0, sizeof(c));
	memset(slots, 0, sizeof(slots));
	dom_conf_defaults(&d.conf, "fuzz");
	d.conf.shared_addrs = mode & 1;
	if (mode & 2) {
		d.conf.nallow = 2;
		strcpy(d.conf.allow[0], "web");
		strcpy(d.conf.allow[1], "db-1");
	}
	ivsock_region_params_single(&pr, 4096);
	pr.vm_cap = 2;
	pr.listener_cap = 4;
	pr.offer_cap = 4;
	pr.channel_cap = 4;
	FUZZ_ASSERT(ivsock_region_format(&d.rg, region, REGION_SIZE, &pr) == 0);
	d.slots = slots;
	FUZZ_ASSERT(ivsock_dir_add(&d.rg, 10, 1, "vm-10", NULL) == 0);
	FUZZ_ASSERT(ivsock_dir_add(&d.rg, 11, 1, "web", NULL) == 1);
	/* VM 1 already owns 10.0.0.2: a REGISTER claiming it must be refused. */
	memset(&taken, 0, sizeof(taken));
	taken.family = IVSOCK_AF_INET;
	inet_pton(AF_INET, "10.0.0.2", taken.bytes);
	ivsock_dir_set_addrs(&d.rg, 1, &taken, 1);
	slots[1].state = VMSLOT_LIVE;      /* no client: not served */

	c.dom = &d;
	c.peer_id = 10;
	c.vm = 0;
	c.qemu = mode & 4;
	c.fds.n = 0;                       /* no eventfds: the doorbell is a no-op */
	d.clients = &c;
	d.nclients = 1;
	slots[0].state = VMSLOT_LIVE;
	slots[0].c = &c;

	/* The agent's half of the mailbox, as hostile as the fuzzer likes. */
	mb = &d.rg.mailboxes[0];
	p = fuzz_bytes(&in, IVSOCK_MAILBOX_MSG_MAX, &got);
	memcpy(mb->req, p, got);
	len = (mode & 8) ? (uint32_t)got : (uint32_t)got + fuzz_u16(&in) * (mode >> 4);
	mb->req_len = len;
	ivsock_store_release(&mb->req_seq, seq);

	FUZZ_ASSERT(mailbox_serve_client(&c) == (c.doomed ? 1 : 1));
	/* Answered exactly once, with a well-formed header-only reply. */
	FUZZ_ASSERT(ivsock_load_acquire(&mb->resp_seq) == seq);
	FUZZ_ASSERT(mb->resp_len == sizeof(h));
	memcpy(&h, mb->resp, sizeof(h));
	FUZZ_ASSERT(ivsock_msg_check(mb->resp, mb->resp_len, 0, 0) == 0);
	FUZZ_ASSERT(h.status <= 0);
	FUZZ_ASSERT(mailbox_serve_client(&c) == 0);
	/* Whatever it published is a valid directory entry. */
	FUZZ_ASSERT(ivsock_dir_read(&d.rg, 0, &info) == 0);
	FUZZ_ASSERT(info.naddrs <= IVSOCK_VM_MAX_ADDRS);
	FUZZ_ASSERT(memchr(info.name, '\0', sizeof(info.name)));
	if (h.status == 0 && !d.conf.shared_addrs) {
		uint32_t i;

		for (i = 0; i < info.naddrs; i++)
			FUZZ_ASSERT(!ivsock_addr_equal(&info.addrs[i], &taken));
	}
	return 0;
}
