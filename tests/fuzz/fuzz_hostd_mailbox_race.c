// SPDX-License-Identifier: MIT
/*
 * Concurrent mode for ivsockd's mailbox processing (hostd/mailbox.c through
 * mailbox_serve_client, set up as in fuzz_hostd_mailbox.c): the harness plays an
 * honest agent posting fuzzed requests (REGISTER, UNREGISTER, PING,
 * garbage) while a scribbler thread rewrites, at the same time, the words
 * the VM controls (req_seq, req_len, req bytes, heartbeat) and, in the
 * second level, the directory entries of every VM (a hostile member of the
 * domain: slot words, peer IDs, address counts, seqlock words, names).
 * The region is in guarded memory. Checked: every scan returns (watchdog),
 * no access outside the region (guard page, ASan), each answer the daemon
 * publishes is one well-formed header with status <= 0, and, when the
 * directory is left alone, what REGISTER published for the VM is valid and
 * never claims another VM's address.
 */
#include <errno.h>
#include <arpa/inet.h>

#include "ivsock/directory.h"
#include "ivsock/msg.h"
#include "../../hostd/ivsockd.h"
#include "../../hostd/log.h"
#include "scribble.h"

#define REGION_SIZE 65536U

static uint8_t *region;

/* A request the honest agent posts: kind from the input, mostly valid. */
static uint32_t make_req(struct fuzz_in *in, uint8_t *req, uint32_t seq)
{
	struct ivsock_msg_hdr h;
	struct ivsock_mb_register r;
	uint8_t kind = fuzz_u8(in);
	uint32_t len = 0, i;
	size_t got;
	const uint8_t *p;

	memset(&r, 0, sizeof(r));
	switch (kind % 4) {
	case 0:
		r.agent_version = 1;
		r.naddrs = fuzz_u8(in) % (IVSOCK_VM_MAX_ADDRS + 2);
		for (i = 0; i < r.naddrs && i < IVSOCK_VM_MAX_ADDRS; i++) {
			uint32_t a = htonl(0x0a000000 | fuzz_u8(in));

			r.addrs[i].family = (kind & 0x10) ? IVSOCK_AF_INET6 : IVSOCK_AF_INET;
			memcpy(r.addrs[i].bytes, &a, 4);
		}
		p = fuzz_bytes(in, fuzz_u8(in) % sizeof(r.hostname), &got);
		memcpy(r.hostname, p, got);
		ivsock_msg_init(&h, IVSOCK_MB_REGISTER, sizeof(r), seq);
		memcpy(req, &h, sizeof(h));
		memcpy(req + sizeof(h), &r, sizeof(r));
		return sizeof(h) + sizeof(r);
	case 1:
		ivsock_msg_init(&h, IVSOCK_MB_UNREGISTER, 0, seq);
		break;
	case 2:
		ivsock_msg_init(&h, IVSOCK_MB_PING, 0, seq);
		break;
	default:
		p = fuzz_bytes(in, fuzz_u16(in) % IVSOCK_MAILBOX_MSG_MAX, &got);
		memcpy(req, p, got);
		return (uint32_t)got;
	}
	memcpy(req, &h, sizeof(h));
	(void)len;
	return sizeof(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	uint8_t mode = fuzz_u8(&in);
	bool dir_hostile = mode & 0x10;
	struct ivsock_region_params pr;
	struct vmslot slots[2];
	struct domain d;
	struct client c;
	struct ivsock_mailbox *mb;
	struct ivsock_addr taken;
	struct ivsock_vm_info info;
	static struct scribbler sc;
	uint32_t seq = 0, i, k;
	int rounds = 0, n;

	if (!region) {
		region = fuzz_guarded_alloc(REGION_SIZE);
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
	memset(&taken, 0, sizeof(taken));
	taken.family = IVSOCK_AF_INET;
	inet_pton(AF_INET, "10.0.0.2", taken.bytes);
	ivsock_dir_set_addrs(&d.rg, 1, &taken, 1);
	slots[1].state = VMSLOT_LIVE;
	c.dom = &d;
	c.peer_id = 10;
	c.vm = 0;
	c.qemu = mode & 4;
	c.fds.n = 0;
	d.clients = &c;
	d.nclients = 1;
	slots[0].state = VMSLOT_LIVE;
	slots[0].c = &c;
	mb = &d.rg.mailboxes[0];

	scrib_init(&sc);
	scrib_add(&sc, &mb->req_seq, 4, 1);
	scrib_add(&sc, &mb->req_len, 4, IVSOCK_MAILBOX_MSG_MAX);
	scrib_add(&sc, &mb->agent_heartbeat, 8, 1);
	for (k = 0; k < sizeof(struct ivsock_msg_hdr) + 48; k += 4)
		scrib_add(&sc, &mb->req[k], 4, sizeof(struct ivsock_mb_register));
	/* hostname area of a REGISTER payload */
	for (k = 0; k < IVSOCK_NAME_MAX; k += 8)
		scrib_add(&sc, &mb->req[sizeof(struct ivsock_msg_hdr) +
					offsetof(struct ivsock_mb_register, hostname) + k], 8, 0);
	if (dir_hostile) {
		for (i = 0; i < d.rg.vm_cap; i++) {
			struct ivsock_vm_entry *e = &d.rg.vms[i];

			scrib_add(&sc, &e->slot, 8, IVSOCK_VM_ALIVE);
			scrib_add(&sc, &e->peer_id, 4, 10);
			scrib_add(&sc, &e->naddrs, 4, IVSOCK_VM_MAX_ADDRS);
			scrib_add(&sc, &e->addr_seq, 4, 1);
			scrib_add(&sc, &e->name[0], 8, 0x62657700U);
			scrib_add(&sc, &e->name[IVSOCK_NAME_MAX - 8], 8, 0x41414141U);
			scrib_add(&sc, &e->addrs[0].family, 1, IVSOCK_AF_INET);
			scrib_add(&sc, &e->addrs[0].bytes[0], 4, 0x0200000aU);
		}
	}
	scrib_from_input(&sc, &in);
	scrib_start(&sc);

	while (in.n && rounds++ < 16) {
		uint32_t len = make_req(&in, mb->req, ++seq);

		mb->req_len = len;
		ivsock_store_release(&mb->req_seq, seq);
		n = WD(mailbox_serve_client(&c));
		FUZZ_ASSERT(n >= 0 && (uint32_t)n <= d.rg.vm_cap);
		if (c.doomed)
			break;
		/* The daemon's half is written only by the daemon. */
		if (n) {
			struct ivsock_msg_hdr h;

			FUZZ_ASSERT(mb->resp_len == sizeof(h));
			memcpy(&h, mb->resp, sizeof(h));
			FUZZ_ASSERT(ivsock_msg_check(mb->resp, mb->resp_len, 0, 0) == 0);
			FUZZ_ASSERT(h.status <= 0);
			FUZZ_ASSERT(ivsock_load_acquire(&mb->resp_seq) == slots[0].mb_seen);
		}
		if (!dir_hostile) {
			scrib_hold(&sc);
			if (WD(ivsock_dir_read(&d.rg, 0, &info)) == 0) {
				FUZZ_ASSERT(info.naddrs <= IVSOCK_VM_MAX_ADDRS);
				FUZZ_ASSERT(memchr(info.name, '\0', sizeof(info.name)));
				if (!d.conf.shared_addrs)
					for (i = 0; i < info.naddrs; i++)
						FUZZ_ASSERT(!ivsock_addr_equal(&info.addrs[i], &taken));
			}
			scrib_release(&sc);
		}
	}
	scrib_stop(&sc);
	/* A last scan over whatever the VM left: returns, answers validly. */
	n = WD(mailbox_serve_client(&c));
	FUZZ_ASSERT(n >= 0 && (uint32_t)n <= d.rg.vm_cap);
	return 0;
}
