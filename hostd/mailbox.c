// SPDX-License-Identifier: MIT
/*
 * Per-VM control mailboxes: the agent writes req/req_len, bumps req_seq and
 * rings (daemon peer, vector 0); we answer in resp/resp_len, publish
 * resp_seq = req_seq and ring the VM's vector 0. The mailbox is untrusted:
 * req_len is read once and bounded, the request copied out before parsing.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ivsock/directory.h"
#include "ivsock/msg.h"
#include "identify.h"
#include "ivsockd.h"
#include "log.h"

#define MB_REPLY_UNREADABLE 0xffffU /* reply type when the request had none */

void mailbox_reset(struct domain *d, int vm)
{
	struct ivsock_mailbox *mb = &d->rg.mailboxes[vm];

	ivsock_store_relaxed(&mb->req_seq, 0);
	mb->req_len = 0;
	ivsock_store_relaxed(&mb->agent_heartbeat, 0);
	memset(mb->req, 0, sizeof(mb->req));
	mb->resp_len = 0;
	memset(mb->resp, 0, sizeof(mb->resp));
	/* Pairs with the agent's acquire of resp_seq. */
	ivsock_store_release(&mb->resp_seq, 0);
	d->slots[vm].mb_seen = 0;
}

/* Checks one address claim; 0 = publish, 1 = skip (VM-local), <0 = refuse. */
static int check_addr(struct domain *d, int vm, struct ivsock_addr *a)
{
	static const uint8_t zero[16];
	int owner;

	memset(a->reserved, 0, sizeof(a->reserved));
	if (a->family == IVSOCK_AF_INET) {
		if (memcmp(a->bytes + 4, zero, 12))
			return -EINVAL;
		if (a->bytes[0] == 127)
			return 1;
	} else if (a->family == IVSOCK_AF_INET6) {
		static const uint8_t lo6[16] = { [15] = 1 };

		if (!memcmp(a->bytes, lo6, 16))
			return 1;
	} else {
		return -EAFNOSUPPORT;
	}
	if (ivsock_addr_is_any(a))
		return -EINVAL;
	owner = ivsock_dir_find_addr(&d->rg, a);
	if (owner >= 0 && owner != vm && !d->conf.shared_addrs)
		return -EADDRINUSE;
	return 0;
}

/* A name no other live VM of the domain uses. */
static void unique_name(struct domain *d, int vm, uint32_t peer, char *name)
{
	struct ivsock_vm_info info;
	uint32_t i;

	for (i = 0; i < d->rg.vm_cap; i++) {
		if ((int)i == vm || d->slots[i].state != VMSLOT_LIVE)
			continue;
		if (ivsock_dir_read(&d->rg, i, &info) == 0 && !strcmp(info.name, name)) {
			char suffix[16];
			size_t n = (size_t)snprintf(suffix, sizeof(suffix), "-p%u", peer);

			if (strlen(name) + n >= IVSOCK_NAME_MAX)
				name[IVSOCK_NAME_MAX - 1 - n] = '\0';
			strcat(name, suffix);
			return;
		}
	}
}

static int do_register(struct domain *d, int vm, const uint8_t *payload, uint32_t len)
{
	struct ivsock_mb_register r;
	struct ivsock_addr keep[IVSOCK_VM_MAX_ADDRS];
	struct client *c = d->slots[vm].c;
	uint32_t i, n = 0;
	char name[IVSOCK_NAME_MAX];
	int rc;

	if (len < sizeof(r))
		return -EMSGSIZE;
	memcpy(&r, payload, sizeof(r));
	if (r.naddrs > IVSOCK_VM_MAX_ADDRS)
		return -EINVAL;
	if (!memchr(r.hostname, '\0', sizeof(r.hostname)))
		return -EINVAL;
	for (i = 0; i < r.naddrs; i++) {
		rc = check_addr(d, vm, &r.addrs[i]);
		if (rc < 0) {
			char buf[64];

			log_warn("domain %s: vm %d (peer %u) REGISTER refused: address %s: %s",
				 d->conf.name, vm, c->peer_id,
				 ivsock_addr_str(&r.addrs[i], buf, sizeof(buf)), strerror(-rc));
			return rc;
		}
		if (rc == 0)
			keep[n++] = r.addrs[i];
	}
	if (!c->qemu && r.hostname[0]) {
		snprintf(name, sizeof(name), "%s", r.hostname);
		ident_sanitize(name);
		if (!conf_allowed(&d->conf, name)) {
			log_warn("domain %s: peer %u registers as '%s', not in the allow list: "
				 "dropping it", d->conf.name, c->peer_id, name);
			c->doomed = true;
			c->why = "registered name not allowed";
			return -EACCES;
		}
		unique_name(d, vm, c->peer_id, name);
		ivsock_dir_set_name(&d->rg, (uint32_t)vm, name, NULL);
	} else if (!c->qemu && d->conf.nallow) {
		c->doomed = true;
		c->why = "no registered name, domain has an allow list";
		return -EACCES;
	}
	ivsock_dir_set_addrs(&d->rg, (uint32_t)vm, keep, n);
	c->registered = true;
	log_info("domain %s: vm %d (peer %u) registered %u address%s (agent v%u)",
		 d->conf.name, vm, c->peer_id, n, n == 1 ? "" : "es", r.agent_version);
	return 0;
}

static void respond(struct domain *d, int vm, uint32_t seq, uint16_t type,
		    uint32_t rseq, int status)
{
	struct ivsock_mailbox *mb = &d->rg.mailboxes[vm];
	struct ivsock_msg_hdr h;

	ivsock_msg_init(&h, type ? type : MB_REPLY_UNREADABLE, 0, rseq);
	h.status = status;
	memcpy(mb->resp, &h, sizeof(h));
	mb->resp_len = sizeof(h);
	/* Publish: pairs with the agent's acquire load of resp_seq, after
	 * which resp/resp_len are complete. */
	ivsock_store_release(&mb->resp_seq, seq);
	d->slots[vm].mb_seen = seq;
	if (d->slots[vm].c)
		domain_ring(d, d->slots[vm].c->peer_id, 0);
}

static void serve(struct domain *d, int vm, uint32_t seq)
{
	struct ivsock_mailbox *mb = &d->rg.mailboxes[vm];
	uint8_t buf[IVSOCK_MAILBOX_MSG_MAX];
	struct ivsock_msg_hdr h;
	uint32_t len = mb->req_len;   /* read once; acquire on req_seq orders it */
	int status;

	memset(&h, 0, sizeof(h));
	if (len < sizeof(h) || len > sizeof(buf)) {
		status = -EMSGSIZE;
		goto out;
	}
	memcpy(buf, mb->req, len);
	memcpy(&h, buf, sizeof(h));
	status = ivsock_msg_check(buf, len, 0, 0);
	if (status < 0) {
		h.type = 0;
		goto out;
	}
	switch (h.type) {
	case IVSOCK_MB_REGISTER:
		status = do_register(d, vm, buf + sizeof(h), h.len);
		/* It speaks the agent protocol: refused addresses do not make
		 * it a silent client (register_timeout); a refused name dooms
		 * it anyway. */
		if (d->slots[vm].c && h.len >= sizeof(struct ivsock_mb_register))
			d->slots[vm].c->introduced = true;
		break;
	case IVSOCK_MB_UNREGISTER:
		ivsock_dir_set_addrs(&d->rg, (uint32_t)vm, NULL, 0);
		log_info("domain %s: vm %d unregistered", d->conf.name, vm);
		status = 0;
		break;
	case IVSOCK_MB_PING:
		status = 0;
		break;
	default:
		status = -EOPNOTSUPP;
		break;
	}
out:
	if (status < 0)
		log_debug("domain %s: vm %d mailbox request type %u: %s", d->conf.name,
			  vm, h.type, strerror(-status));
	respond(d, vm, seq, h.type, h.seq, status);
}

/*
 * The writer of a request is whoever rang: client c's private daemon
 * doorbell (domain.c gives every client its own eventfds for the daemon's
 * peer ID) can be rung only by c, so only c's own mailbox - the directory
 * entry the daemon assigned to c's connection - is read. Another member of
 * the domain can still scribble on c's mailbox (it maps the whole region),
 * but the daemon acts on it only when c itself rings: at worst c's own
 * pending request is garbled (denial of service to c), never a request is
 * obeyed on c's behalf that c did not send.
 */
int mailbox_serve_client(struct client *c)
{
	struct domain *d = c->dom;
	struct ivsock_mailbox *mb;
	uint32_t vm = (uint32_t)c->vm, seq;

	if (c->vm < 0 || vm >= d->rg.vm_cap || d->slots[vm].state != VMSLOT_LIVE ||
	    d->slots[vm].c != c || c->doomed)
		return 0;
	mb = &d->rg.mailboxes[vm];
	/* Pairs with the agent's release store of req_seq. */
	seq = ivsock_load_acquire(&mb->req_seq);
	if (seq == d->slots[vm].mb_seen)
		return 0;
	serve(d, (int)vm, seq);
	return 1;
}
