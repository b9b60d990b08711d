// SPDX-License-Identifier: MIT
/* The agent's STATUS answer: its state, its clients and this VM's channels,
 * as JSON (jansson). Shared memory is only read here, for display. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <jansson.h>

#include "ivsock/channel.h"
#include "ivsock/directory.h"
#include "agent.h"
#include "log.h"

static const char *chan_state(uint8_t s)
{
	switch (s) {
	case IVSOCK_SLOT_INIT: return "init";
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

static json_t *addr_json(const struct ivsock_addr *a)
{
	char buf[64];

	return json_string(ivsock_addr_str(a, buf, sizeof(buf)));
}

static json_t *channels_json(struct agent *a, bool all, uid_t uid)
{
	const struct ivsock_region *rg = &a->be.rg;
	json_t *arr = json_array();

	for (uint32_t i = 0; i < rg->channel_cap; i++) {
		struct ivsock_channel *c = &rg->channels[i];
		struct ivsock_slot_val v = ivsock_slot_get(&c->slot);
		struct ivsock_tuple t;
		json_t *ends, *o;
		bool ours = v.vm == a->be.vm_index;

		if (v.state < IVSOCK_CHAN_OFFERED)
			continue;
		for (int s = 0; s < 2; s++)
			if ((ivsock_load_acquire(&c->end[s].flags) & IVSOCK_END_ATTACHED) &&
			    c->end[s].vm_index == a->be.vm_index)
				ours = true;
		if (!ours)
			continue;
		/* a non-root viewer sees the connections of its own uid */
		if (!all && !((c->end[0].vm_index == a->be.vm_index && c->end[0].uid == uid) ||
			      (c->end[1].vm_index == a->be.vm_index && c->end[1].uid == uid)))
			continue;
		t = c->tuple;
		t.src.family = t.src.family == IVSOCK_AF_INET6 ? IVSOCK_AF_INET6 : IVSOCK_AF_INET;
		t.dst.family = t.dst.family == IVSOCK_AF_INET6 ? IVSOCK_AF_INET6 : IVSOCK_AF_INET;
		ends = json_array();
		for (int s = 0; s < 2; s++) {
			struct ivsock_chan_end *e = &c->end[s];
			struct ivsock_end_ctl *ctl = ivsock_chan_end_ctl(rg, i, s, NULL, NULL);

			json_array_append_new(ends, json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}",
				"vm", (json_int_t)e->vm_index, "client", (json_int_t)e->client,
				"uid", (json_int_t)e->uid,
				"peer_id", (json_int_t)e->peer_id, "vector", (json_int_t)e->vector,
				"flags", (json_int_t)ivsock_load_relaxed(&e->flags),
				"tx_bytes", ctl ? (json_int_t)ivsock_load_relaxed(&ctl->tx_bytes) : 0,
				"rx_bytes", ctl ? (json_int_t)ivsock_load_relaxed(&ctl->rx_bytes) : 0));
		}
		o = json_pack("{s:I,s:I,s:s,s:o,s:I,s:o,s:I,s:o}",
			      "index", (json_int_t)i, "gen", (json_int_t)v.gen,
			      "state", chan_state(v.state),
			      "src", addr_json(&t.src), "sport", (json_int_t)t.sport,
			      "dst", addr_json(&t.dst), "dport", (json_int_t)t.dport,
			      "ends", ends);
		json_array_append_new(arr, o);
	}
	return arr;
}

char *agent_status_json(struct agent *a, bool all, uid_t uid)
{
	json_t *root, *clients, *addrs, *agent;
	char fmt[32], *out;

	addrs = json_array();
	for (uint32_t i = 0; i < a->reg.naddrs && i < IVSOCK_VM_MAX_ADDRS; i++)
		json_array_append_new(addrs, addr_json(&a->reg.addrs[i]));
	snprintf(fmt, sizeof(fmt), "%016llx", (unsigned long long)a->be.rg.format_id);
	agent = json_pack("{s:I,s:s,s:I,s:I,s:I,s:I,s:I,s:s,s:b,s:I,s:s,s:I,s:b,s:s,s:o}",
		"pid", (json_int_t)getpid(),
		"backend", a->be.ops->name,
		"peer_id", (json_int_t)a->be.peer_id,
		"vm_index", (json_int_t)a->be.vm_index,
		"vm_gen", (json_int_t)a->be.vm_gen,
		"vectors", (json_int_t)a->be.vectors,
		"region_size", (json_int_t)a->be.size,
		"format_id", fmt,
		"registered", a->registered,
		"register_status", (json_int_t)a->reg_status,
		"daemon", a->mb.daemon_silent ? "silent" : "alive",
		"daemon_epoch", (json_int_t)a->mb.epoch,
		"daemon_socket", a->be.ctl_fd >= 0 || a->be.ops->kind != IVSOCK_BACKEND_SERVER,
		"hostname", a->reg.hostname,
		"addrs", addrs);
	clients = json_array();
	for (struct agent_client *c = a->clients; c; c = c->next) {
		/* Who runs what is not everyone's business. */
		if (!c->hello || (!all && c->uid != uid))
			continue;
		json_array_append_new(clients, json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}",
			"pid", (json_int_t)c->pid, "uid", (json_int_t)c->uid,
			"client_id", (json_int_t)c->id, "vector", (json_int_t)c->vector,
			"channels", (json_int_t)c->ends, "listeners", (json_int_t)c->listeners));
	}
	root = json_pack("{s:o,s:o,s:o,s:{s:I,s:I},s:{s:b,s:I,s:I,s:I,s:I,s:I,s:b,s:I},"
			 "s:{s:I,s:I,s:I},s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}}",
			 "agent", agent, "clients", clients,
			 "channels", channels_json(a, all, uid), "ring_pool",
			 "used", (json_int_t)(2 * ivsock_block_pool_used(&a->be.rg,
								      (uint8_t)a->be.vm_index)),
			 "quota", (json_int_t)(2 * a->be.rg.class[a->be.rg.default_class].blocks_per_vm),
			 "admission",
			 "restricted", a->restricted,
			 "connections", (json_int_t)a->nclients,
			 "max_per_uid", (json_int_t)a->max_per_uid,
			 "refused", (json_int_t)a->refused,
			 "capped", (json_int_t)a->capped,
			 "shed", (json_int_t)a->shed,
			 "paused", a->listen_paused,
			 "log_suppressed", (json_int_t)agent_log_suppressed(),
			 "limits",
			 "max_channels_per_uid", (json_int_t)a->limits.max_chans,
			 "max_listeners_per_uid", (json_int_t)a->limits.max_listeners,
			 "ring_share_per_uid", (json_int_t)a->limits.ring_share,
			 "broker",
			 "opened", (json_int_t)a->stats.opened,
			 "accepted", (json_int_t)a->stats.accepted,
			 "open_refused", (json_int_t)a->stats.refused_open,
			 "accept_refused", (json_int_t)a->stats.refused_accept,
			 "bad_close", (json_int_t)a->stats.bad_close,
			 "late_offers", (json_int_t)a->stats.late_offers,
			 "held_accepts", (json_int_t)a->stats.held_accepts,
			 "bad_port", (json_int_t)a->stats.bad_port,
			 "tracked", (json_int_t)a->stats.tracked,
			 "track_refused", (json_int_t)a->stats.refused_track);
	if (!root)
		return NULL;
	out = json_dumps(root, JSON_INDENT(2));
	json_decref(root);
	return out;
}
