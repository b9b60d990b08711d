// SPDX-License-Identifier: MIT
/*
 * Builds the control API's JSON from validated snapshots of the region
 * (ivsock_dir_read for VMs; channel fields read once and bounds-checked) and
 * the daemon's own bookkeeping.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ivsock/channel.h"
#include "ivsock/directory.h"
#include "ctl_json.h"
#include "log.h"
#include "identify.h"
#include "ivsockd.h"

/*
 * Names come from shared memory (a VM can write any bytes into its own
 * directory entry): jansson refuses invalid UTF-8 (json_string() gives NULL
 * and the whole object would vanish), so every byte that does not start a
 * well-formed UTF-8 sequence (RFC 3629: no overlongs, no surrogates, nothing
 * above U+10FFFF, no truncated sequence) is replaced by U+FFFD, one per
 * byte. The rest is kept as is; jansson escapes control characters.
 */
size_t ctl_utf8_sanitize(const char *in, size_t len, char *out, size_t outlen)
{
	const uint8_t *s = (const uint8_t *)in;
	size_t i = 0, o = 0;

	while (i < len && s[i]) {
		uint8_t b = s[i];
		size_t n = 0, k;
		uint32_t cp = 0, min = 0;

		if (b < 0x80) {
			n = 1;
		} else if (b >= 0xc2 && b <= 0xdf) {
			n = 2; cp = b & 0x1f; min = 0x80;
		} else if (b >= 0xe0 && b <= 0xef) {
			n = 3; cp = b & 0x0f; min = 0x800;
		} else if (b >= 0xf0 && b <= 0xf4) {
			n = 4; cp = b & 0x07; min = 0x10000;
		}
		for (k = 1; n > 1 && k < n; k++) {
			if (i + k >= len || (s[i + k] & 0xc0) != 0x80) {
				n = 0;
				break;
			}
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (n > 1 && (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)))
			n = 0;
		if (n == 0) {
			if (o + 3 >= outlen)
				break;
			memcpy(out + o, "\xef\xbf\xbd", 3);  /* U+FFFD */
			o += 3;
			i++;
			continue;
		}
		if (o + n >= outlen)
			break;
		memcpy(out + o, s + i, n);
		o += n;
		i += n;
	}
	if (outlen)
		out[o] = '\0';
	return o;
}

/* A JSON string for untrusted bytes: never NULL for a non-NULL input. */
static json_t *jstr_safe(const char *s)
{
	char buf[IVSOCK_NAME_MAX * 3 + 1];
	json_t *j;

	ctl_utf8_sanitize(s, strnlen(s, IVSOCK_NAME_MAX), buf, sizeof(buf));
	j = json_string(buf);
	return j ? j : json_string("?");
}

static const char *slot_state_name(enum vmslot_state s)
{
	switch (s) {
	case VMSLOT_LIVE: return "alive";
	case VMSLOT_DEAD: return "dead";
	case VMSLOT_ORPHAN: return "orphan";
	default: return "free";
	}
}

static json_t *addr_json(const struct ivsock_addr *a)
{
	char buf[64];

	return json_string(ivsock_addr_str(a, buf, sizeof(buf)));
}

/* The class table; with vm >= 0, that VM's blocks used per class. */
static json_t *classes_json(struct domain *d, int vm)
{
	json_t *arr = json_array();
	uint32_t k;

	for (k = 0; k < d->rg.nclasses; k++) {
		const struct ivsock_class_desc *c = &d->rg.class[k];
		json_t *o = json_pack("{s:i, s:I, s:i, s:I, s:b}", "ring_size", (int)c->ring_size,
				      "block_size", (json_int_t)c->block_size,
				      "quota", (int)c->blocks_per_vm,
				      "pool_off", (json_int_t)c->pool_off,
				      "default", k == d->rg.default_class);

		if (vm >= 0)
			json_object_set_new(o, "used", json_integer(
				ivsock_block_class_used(&d->rg, (uint8_t)vm, k)));
		json_array_append_new(arr, o);
	}
	return arr;
}

json_t *ctl_json_domains(void)
{
	json_t *arr = json_array();
	struct domain *d;

	for (d = g_daemon->domains; d; d = d->next) {
		uint32_t i, alive = 0, dead = 0, orphan = 0;
		json_t *o;
		char fid[20];

		for (i = 0; i < d->rg.vm_cap; i++) {
			alive += d->slots[i].state == VMSLOT_LIVE;
			dead += d->slots[i].state == VMSLOT_DEAD;
			orphan += d->slots[i].state == VMSLOT_ORPHAN;
		}
		snprintf(fid, sizeof(fid), "%016llx", (unsigned long long)d->rg.format_id);
		o = json_pack("{s:s, s:s, s:s, s:I, s:i, s:i, s:i, s:i, s:i, s:i}",
			      "name", d->conf.name, "socket", d->conf.socket,
			      "backing", d->conf.backing,
			      "region_size", (json_int_t)d->conf.region_size,
			      "vectors", (int)d->conf.vectors, "max_vms", (int)d->rg.vm_cap,
			      "ring_size", (int)d->rg.class[d->rg.default_class].ring_size,
			      "rings_per_vm", (int)d->rg.class[d->rg.default_class].blocks_per_vm * 2,
			      "daemon_peer_id", (int)d->self_id, "clients", (int)d->nclients);
		json_object_set_new(o, "vms_alive", json_integer(alive));
		json_object_set_new(o, "vms_dead", json_integer(dead));
		json_object_set_new(o, "vms_orphan", json_integer(orphan));
		json_object_set_new(o, "peer_ids_in_use", json_integer(d->ids.count));
		json_object_set_new(o, "accepted", json_integer((json_int_t)d->accepted));
		json_object_set_new(o, "refused", json_integer((json_int_t)d->refused));
		json_object_set_new(o, "dropped", json_integer((json_int_t)d->dropped));
		/* operator requests: ring -> TCP, ring -> another ring */
		json_object_set_new(o, "demotes", json_integer((json_int_t)d->demotes));
		json_object_set_new(o, "resizes", json_integer((json_int_t)d->resizes));
		json_object_set_new(o, "tcp_promotes", json_integer((json_int_t)d->tcp_promotes));
		/* the ring policy (policy.c): its rules and what they did */
		json_object_set_new(o, "shrink_idle_ms", json_integer(d->conf.shrink_idle_ms));
		json_object_set_new(o, "reclaim_idle_ms", json_integer(d->conf.reclaim_idle_ms));
		json_object_set_new(o, "reclaim_free_pct", json_integer(d->conf.reclaim_free_pct));
		json_object_set_new(o, "reclaimed", json_integer((json_int_t)d->reclaimed));
		json_object_set_new(o, "shrunk", json_integer((json_int_t)d->shrunk));
		json_object_set_new(o, "format_id", json_string(fid));
		json_object_set_new(o, "layout_version", json_integer(IVSOCK_LAYOUT_VERSION));
		json_object_set_new(o, "default_class", json_integer(d->rg.default_class));
		json_object_set_new(o, "ring_classes", classes_json(d, -1));
		json_object_set_new(o, "heartbeat", json_integer((json_int_t)
			ivsock_load_relaxed(&d->rg.sb->daemon_heartbeat)));
		json_object_set_new(o, "epoch", json_integer(
			ivsock_load_relaxed(&d->rg.sb->daemon_epoch)));
		json_object_set_new(o, "adopted", json_boolean(d->adopted));
		json_object_set_new(o, "allow", json_array());
		for (i = 0; i < d->conf.nallow; i++)
			json_array_append_new(json_object_get(o, "allow"),
					      json_string(d->conf.allow[i]));
		json_object_set_new(o, "grace_ms", json_integer(d->conf.grace_ms));
		json_array_append_new(arr, o);
	}
	return json_pack("{s:o}", "domains", arr);
}

static json_t *vm_json(struct domain *d, const struct ivsock_vm_info *info, bool detail)
{
	struct vmslot *s = &d->slots[info->index];
	json_t *addrs = json_array(), *o;
	char uuid[37];
	uint32_t i;

	for (i = 0; i < info->naddrs; i++)
		json_array_append_new(addrs, addr_json(&info->addrs[i]));
	ident_format_uuid(info->uuid, uuid);
	o = json_pack("{s:s, s:o, s:s, s:i, s:i, s:i, s:s, s:o, s:i}",
		      "domain", d->conf.name, "name", jstr_safe(info->name), "uuid", uuid,
		      "peer_id", (int)info->peer_id, "index", (int)info->index,
		      "gen", (int)info->gen,
		      "state", info->state == IVSOCK_VM_ALIVE ? "alive" : "dead",
		      "addresses", addrs, "vectors", (int)info->vectors);
	json_object_set_new(o, "daemon_state", json_string(slot_state_name(s->state)));
	if (s->state == VMSLOT_LIVE && s->c) {
		json_object_set_new(o, "pid", json_integer(s->c->pid));
		json_object_set_new(o, "qemu", json_boolean(s->c->qemu));
		json_object_set_new(o, "registered", json_boolean(s->c->registered));
	}
	if (detail) {
		struct ivsock_mailbox *mb = &d->rg.mailboxes[info->index];

		json_object_set_new(o, "channels", json_integer(
			ivsock_chan_count_vm(&d->rg, (uint8_t)info->index)));
		/* v3 names, in rings (two per block): used in all classes,
		 * quota of the default class */
		json_object_set_new(o, "rings_used", json_integer(2 * ivsock_block_pool_used(
			&d->rg, (uint8_t)info->index)));
		json_object_set_new(o, "rings_quota", json_integer(
			2 * d->rg.class[d->rg.default_class].blocks_per_vm));
		json_object_set_new(o, "blocks_used", json_integer(
			ivsock_block_pool_used(&d->rg, (uint8_t)info->index)));
		json_object_set_new(o, "ring_classes", classes_json(d, (int)info->index));
		json_object_set_new(o, "mailbox_req_seq",
				    json_integer(ivsock_load_relaxed(&mb->req_seq)));
		json_object_set_new(o, "mailbox_resp_seq",
				    json_integer(ivsock_load_relaxed(&mb->resp_seq)));
		json_object_set_new(o, "agent_heartbeat", json_integer(
			(json_int_t)ivsock_load_relaxed(&mb->agent_heartbeat)));
		if (s->state == VMSLOT_LIVE && s->c)
			json_object_set_new(o, "queued_messages", json_integer(s->c->qlen));
	}
	return o;
}

json_t *ctl_json_vms(void)
{
	json_t *arr = json_array();
	struct domain *d;

	for (d = g_daemon->domains; d; d = d->next) {
		uint32_t i;

		for (i = 0; i < d->rg.vm_cap; i++) {
			struct ivsock_vm_info info;

			if (ivsock_dir_read(&d->rg, i, &info) == 0)
				json_array_append_new(arr, vm_json(d, &info, false));
		}
	}
	return json_pack("{s:o}", "vms", arr);
}

json_t *ctl_json_vm_show(const char *name, int *status)
{
	struct domain *d;

	for (d = g_daemon->domains; d; d = d->next) {
		uint32_t i;

		for (i = 0; i < d->rg.vm_cap; i++) {
			struct ivsock_vm_info info;

			char safe[IVSOCK_NAME_MAX * 3 + 1];

			if (ivsock_dir_read(&d->rg, i, &info) < 0)
				continue;
			/* The raw bytes, or the name as the JSON shows it. */
			ctl_utf8_sanitize(info.name, sizeof(info.name), safe, sizeof(safe));
			if (!strcmp(info.name, name) || !strcmp(safe, name)) {
				*status = 0;
				return json_pack("{s:o}", "vm", vm_json(d, &info, true));
			}
		}
	}
	*status = -ENOENT;
	return NULL;
}

static const char *chan_state_name(uint8_t s)
{
	switch (s) {
	case IVSOCK_CHAN_OFFERED: return "offered";
	case IVSOCK_CHAN_CONNECTED: return "connected";
	case IVSOCK_CHAN_ABANDONED: return "abandoned";
	case IVSOCK_CHAN_REVOKED: return "revoked";
	case IVSOCK_CHAN_ACCEPTING: return "accepting";
	case IVSOCK_CHAN_DEMOTED: return "demoted";
	case IVSOCK_CHAN_TCP: return "tcp";
	default: return "unknown";
	}
}

/* The TCP bytes of a direction: its end's tx_start count (0 while it has
 * not left TCP, or on a channel that never was on TCP). */
static json_int_t tcp_count(const struct ivsock_end_ctl *c)
{
	uint64_t ts = c ? ivsock_load_acquire((ivsock_a64 *)&c->tx_start) : 0;

	return ts & IVSOCK_START_RING ? (json_int_t)(ts & ~IVSOCK_START_RING) : 0;
}

static json_int_t ld64(const ivsock_a64 *w)
{
	return (json_int_t)ivsock_load_relaxed((ivsock_a64 *)w);
}

/*
 * Per-path bytes of the connection as this end saw them (docs/switch.md,
 * "Per-path bytes"): on its rings, this channel's counters plus the
 * earlier channels' as the end wrote them; on TCP, the kernel counts at
 * which each direction moved to this ring (its own tx_start, the peer's
 * for rx). Monitor words, written by the ends: shown, never acted on.
 */
static json_t *paths_json(const struct ivsock_end_ctl *ctl, const struct ivsock_end_ctl *peer)
{
	if (!ctl)
		return json_pack("{s:{s:i, s:i}, s:{s:i, s:i}}", "ring", "tx_bytes", 0, "rx_bytes", 0,
				 "tcp", "tx_bytes", 0, "rx_bytes", 0);
	return json_pack("{s:{s:I, s:I}, s:{s:I, s:I}}",
			 "ring", "tx_bytes", ld64(&ctl->tx_bytes) + ld64(&ctl->ring_tx_before),
			 "rx_bytes", ld64(&ctl->rx_bytes) + ld64(&ctl->ring_rx_before),
			 "tcp", "tx_bytes", tcp_count(ctl), "rx_bytes", tcp_count(peer));
}

static json_t *end_json(struct domain *d, uint32_t idx, const struct ivsock_chan_end *e,
			int side)
{
	const struct ivsock_end_ctl *other = ivsock_chan_end_ctl(&d->rg, idx, !side, NULL, NULL);
	const struct ivsock_end_ctl *ctl = ivsock_chan_end_ctl(&d->rg, idx, side, NULL, NULL);
	uint32_t vm = e->vm_index, peer = e->peer_id, vector = e->vector, client = e->client;
	uint32_t f = ivsock_load_acquire((ivsock_a32 *)&e->flags);
	struct ivsock_vm_info info;
	const char *vname = "?";
	json_t *flags = json_array(), *o;
	uint64_t sw;
	uint32_t why;
	bool on_tcp;

	if (vm < d->rg.vm_cap && ivsock_dir_read(&d->rg, vm, &info) == 0)
		vname = info.name;
	if (f & IVSOCK_END_ATTACHED)
		json_array_append_new(flags, json_string("attached"));
	if (f & IVSOCK_END_CLOSED)
		json_array_append_new(flags, json_string("closed"));
	if (f & IVSOCK_END_DEAD)
		json_array_append_new(flags, json_string("dead"));
	sw = ctl ? ivsock_load_acquire((ivsock_a64 *)&ctl->tx_switch) : 0;
	why = sw && ctl ? ivsock_load_relaxed((ivsock_a32 *)&ctl->switch_reason) : 0;
	/* a channel opened for a connection on TCP: the tx is still there
	 * until its tx_start (docs/switch.md, "TCP -> ring") */
	on_tcp = (sw & IVSOCK_SWITCH_TCP) ||
		 (ctl && ivsock_load_acquire((ivsock_a32 *)&ctl->rx_ready) &&
		  !(ivsock_load_acquire((ivsock_a64 *)&ctl->tx_start) & IVSOCK_START_RING));
	o = json_pack("{s:s, s:i, s:o, s:i, s:i, s:i, s:o, s:s, s:s, s:I, s:I, s:o}",
			 "side", side ? "acceptor" : "connector",
			 "vm_index", vm < d->rg.vm_cap ? (int)vm : -1, "vm", jstr_safe(vname),
			 "peer_id", (int)peer, "vector", (int)vector, "client", (int)client,
			 "flags", flags,
			 "state", !(f & IVSOCK_END_ATTACHED) ? "unattached" :
				  (f & IVSOCK_END_CLOSED) ? "closed" : "open",
			 /* where this end's tx stream is now (docs/switch.md) */
			 "tx_path", on_tcp ? "tcp" : "ring",
			 "tx_bytes", ctl ? ld64(&ctl->tx_bytes) : 0,
			 "rx_bytes", ctl ? ld64(&ctl->rx_bytes) : 0,
			 "paths", paths_json(ctl, other));
	/* why the tx left the ring, as its end wrote it (a monitor's word:
	 * anything unknown shows as such) */
	if (o && (sw & IVSOCK_SWITCH_TCP))
		json_object_set_new(o, "switch_reason", json_string(
			why == IVSOCK_SWITCH_WHY_OPERATOR ? "operator" :
			why == IVSOCK_SWITCH_WHY_STALLED ? "stalled" :
			why == IVSOCK_SWITCH_WHY_PEER ? "peer" :
			why == IVSOCK_SWITCH_WHY_RESIZE ? "resize" :
			why == IVSOCK_SWITCH_WHY_RECLAIM ? "reclaim" : "unknown"));
	return o;
}

/* A TCP entry (docs/switch.md, "Connections on TCP"): its connector as
 * the agent recorded it, tx on TCP, no per-path bytes (no ring: the kernel
 * counts them); the acceptor is not known. */
static json_t *tcp_end_json(struct domain *d, const struct ivsock_chan_end *e, int side)
{
	uint32_t vm = side ? UINT32_MAX : ivsock_ld32(&e->vm_index);
	struct ivsock_vm_info info;
	const char *vname = "?";

	if (vm < d->rg.vm_cap && ivsock_dir_read(&d->rg, vm, &info) == 0)
		vname = info.name;
	return json_pack("{s:s, s:i, s:o, s:i, s:i, s:i, s:[], s:s, s:s, s:i, s:i, s:n}",
			 "side", side ? "acceptor" : "connector",
			 "vm_index", vm < d->rg.vm_cap ? (int)vm : -1, "vm", jstr_safe(vname),
			 "peer_id", side ? 0 : (int)ivsock_ld32(&e->peer_id),
			 "vector", side ? 0 : (int)ivsock_ld32(&e->vector),
			 "client", side ? 0 : (int)ivsock_ld32(&e->client), "flags",
			 "state", side ? "unknown" : "open", "tx_path", "tcp",
			 "tx_bytes", 0, "rx_bytes", 0, "paths");
}

/*
 * The cursor is a position in the concatenation of every domain's channel
 * table (domains in the daemon's order): a page ends after
 * CTL_CHANNELS_PAGE entries (a reply stays well under the reply limit with
 * 16384 channels a domain) and names where the next one starts.
 */
json_t *ctl_json_channels(const char *arg, int *status)
{
	json_t *arr = json_array(), *r;
	struct domain *d;
	uint64_t from = 0, pos = 0, next = 0;
	bool more = false;
	char *end;

	if (arg && *arg) {
		errno = 0;
		from = strtoull(arg, &end, 10);
		if (*end || errno || arg[0] == '-') {
			*status = -EINVAL;
			json_decref(arr);
			return json_pack("{s:s}", "error", "channels: a cursor (a number) expected");
		}
	}
	for (d = g_daemon->domains; d && !more; pos += d->rg.channel_cap, d = d->next) {
		uint32_t i;

		if (from >= pos + d->rg.channel_cap)
			continue;
		for (i = from > pos ? (uint32_t)(from - pos) : 0; i < d->rg.channel_cap; i++) {
			struct ivsock_channel *c = &d->rg.channels[i];
			struct ivsock_slot_val v = ivsock_slot_get(&c->slot);
			struct ivsock_tuple t;
			char src[64], dst[64];
			int cls;

			if (v.state < IVSOCK_CHAN_OFFERED)
				continue;
			if (json_array_size(arr) >= CTL_CHANNELS_PAGE) {
				more = true;
				next = pos + i;
				break;
			}
			memcpy(&t, &c->tuple, sizeof(t));
			cls = v.state == IVSOCK_CHAN_TCP ? -1 :
			      ivsock_region_block_class(&d->rg, ivsock_ld32(&c->block));
			json_array_append_new(arr, json_pack(
				"{s:s, s:i, s:i, s:s, s:I, s:{s:s, s:i, s:s, s:i}, s:[o, o]}",
				"domain", d->conf.name, "index", (int)i, "gen", (int)v.gen,
				"state", chan_state_name(v.state),
				"ring_size", (json_int_t)(cls < 0 ? 0 : d->rg.class[cls].ring_size),
				"tuple", "src", ivsock_addr_str(&t.src, src, sizeof(src)),
				"sport", (int)t.sport,
				"dst", ivsock_addr_str(&t.dst, dst, sizeof(dst)),
				"dport", (int)t.dport,
				"ends",
				v.state == IVSOCK_CHAN_TCP ? tcp_end_json(d, &c->end[0], 0) :
							     end_json(d, i, &c->end[0], 0),
				v.state == IVSOCK_CHAN_TCP ? tcp_end_json(d, &c->end[1], 1) :
							     end_json(d, i, &c->end[1], 1)));
		}
	}
	r = json_pack("{s:o}", "channels", arr);
	if (more && r)
		json_object_set_new(r, "next", json_integer((json_int_t)next));
	return r;
}

/*
 * The ring size a promotion of channel idx asks for: `want` rounded up to
 * a class of the domain, or with want 0 the next class larger than the
 * channel's own. @return the size, or 0 (none: *why says why).
 */
static uint32_t resize_target(const struct domain *d, uint32_t idx, uint64_t want,
			      const char **why)
{
	int cls = ivsock_region_block_class(&d->rg, ivsock_ld32(&d->rg.channels[idx].block));
	uint32_t cur = cls < 0 ? 0 : d->rg.class[cls].ring_size, best = 0;

	for (uint32_t i = 0; i < d->rg.nclasses; i++) {
		uint32_t rs = d->rg.class[i].ring_size;

		if ((want ? rs >= want : rs > cur) && (!best || rs < best))
			best = rs;
	}
	if (!best)
		*why = want ? "no ring class that large in this domain" :
			      "the channel's ring is of the largest class already";
	return best;
}

/*
 * Promote a connection on TCP (a TCP entry): its connector's shim asks for
 * a ring of `want` bytes (rounded up to a class; 0: the connector's
 * default) on its next call on the socket. Asynchronous: the entry is
 * replaced by the new channel once both ends attached.
 */
static json_t *tcp_promote(struct domain *d, uint32_t idx, uint32_t gen, uint64_t want,
			   int *status)
{
	const char *why = NULL;
	uint32_t to = 0;
	int rc;

	if (want) {
		uint32_t best = 0;

		for (uint32_t i = 0; i < d->rg.nclasses; i++) {
			uint32_t rs = d->rg.class[i].ring_size;

			if (rs >= want && (!best || rs < best))
				best = rs;
		}
		if (!(to = best))
			why = "no ring class that large in this domain";
	}
	if (why) {
		*status = -ERANGE;
		return json_pack("{s:s}", "error", why);
	}
	rc = ivsock_chan_promote_req(&d->rg, idx, gen, to, domain_ring_cb, d);
	*status = rc;
	if (rc < 0)
		return json_pack("{s:s}", "error", rc == -ESTALE ? "no such channel" :
						   "channel moved meanwhile: ask again");
	d->tcp_promotes++;
	log_info("domain %s: connection %u on TCP asked to move to a%s ring (operator request)",
		 d->conf.name, idx, to ? "" : " default");
	return json_pack("{s:{s:s, s:i, s:i, s:I, s:b}}", "promoted", "domain", d->conf.name,
			 "index", (int)idx, "gen", (int)gen, "ring_size", (json_int_t)to,
			 "from_tcp", 1);
}

/* "[DOMAIN/]INDEX" (demote) or "[DOMAIN/]INDEX SIZE" (promote: SIZE bytes,
 * 0 for the next larger class) */
static json_t *chan_switch(const char *arg, int *status, bool promote)
{
	const char *slash = strchr(arg, '/'), *num = slash ? slash + 1 : arg;
	size_t dlen = slash ? (size_t)(slash - arg) : 0;
	struct domain *d, *found = NULL;
	unsigned long idx;
	unsigned long long want = 0;
	struct ivsock_slot_val v;
	const char *why = NULL;
	uint32_t to = 0;
	char *end;
	int rc;

	errno = 0;
	idx = strtoul(num, &end, 10);
	if (promote && *end == ' ' && end[1] && end[1] != '-') {
		const char *sz = end + 1;

		want = strtoull(sz, &end, 10);
		if (end == sz)
			end = (char *)"x";
	}
	if (!*num || *end || errno || num[0] == '-' || want > UINT32_MAX) {
		*status = -EINVAL;
		return json_pack("{s:s}", "error", promote ? "channel: [DOMAIN/]INDEX [SIZE] expected" :
								 "channel: [DOMAIN/]INDEX expected");
	}
	if (slash && memchr(arg, ' ', dlen)) {
		*status = -EINVAL;
		return json_pack("{s:s}", "error", "channel: [DOMAIN/]INDEX expected");
	}
	for (d = g_daemon->domains; d; d = d->next) {
		if (slash && (strlen(d->conf.name) != dlen || strncmp(d->conf.name, arg, dlen)))
			continue;
		if (found) {
			*status = -EINVAL;
			return json_pack("{s:s}", "error", "several domains: say DOMAIN/INDEX");
		}
		found = d;
	}
	if (!found || idx >= found->rg.channel_cap) {
		*status = -ENOENT;
		return json_pack("{s:s}", "error", "no such channel");
	}
	v = ivsock_slot_get(&found->rg.channels[idx].slot);
	if (v.state == IVSOCK_CHAN_TCP) {
		if (!promote) {
			*status = -EALREADY;
			return json_pack("{s:s}", "error", "the connection is on TCP already");
		}
		return tcp_promote(found, (uint32_t)idx, v.gen, want, status);
	}
	if (promote && v.state >= IVSOCK_CHAN_OFFERED && !(to = resize_target(found, (uint32_t)idx, want, &why))) {
		*status = -ERANGE;
		return json_pack("{s:s}", "error", why);
	}
	rc = ivsock_chan_resize(&found->rg, (uint32_t)idx, v.gen, to, domain_ring_cb, found);
	*status = rc;
	if (rc < 0)
		return json_pack("{s:s}", "error",
				 rc == -EALREADY ? "channel is being switched already" :
				 rc == -EBUSY ? "channel is not connected (offered, accepting or revoked)" :
				 rc == -ESTALE ? "no such channel" : "channel moved meanwhile: ask again");
	if (promote) {
		found->resizes++;
		log_info("domain %s: channel %lu moves to a %u-byte ring (operator request)",
			 found->conf.name, idx, to);
		return json_pack("{s:{s:s, s:i, s:i, s:I}}", "promoted", "domain", found->conf.name,
				 "index", (int)idx, "gen", (int)v.gen, "ring_size", (json_int_t)to);
	}
	found->demotes++;
	log_info("domain %s: channel %lu demoted to TCP (operator request)", found->conf.name, idx);
	return json_pack("{s:{s:s, s:i, s:i}}", "demoted", "domain", found->conf.name,
			 "index", (int)idx, "gen", (int)v.gen);
}

json_t *ctl_chan_demote(const char *arg, int *status)
{
	return chan_switch(arg, status, false);
}

json_t *ctl_chan_promote(const char *arg, int *status)
{
	return chan_switch(arg, status, true);
}
