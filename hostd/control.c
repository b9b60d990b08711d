// SPDX-License-Identifier: MIT
/*
 * The control socket (UNIX stream, mode 0660, group "ivsock" if it exists):
 * reads framed requests from ivsockctl, answers with framed JSON. Clients
 * are served without blocking; a client that stops reading is dropped.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "ctl_json.h"
#include "ctl_proto.h"
#include "ivsockd.h"
#include "log.h"

struct ctl_client {
	struct evsrc ev;
	uid_t uid;
	uint64_t active_ms;       /* last request byte in or reply byte out */
	uint8_t in[sizeof(struct ivsock_msg_hdr) + IVSOCK_CTL_REQ_MAX + 1];
	size_t inlen;
	char *out;
	size_t outlen, outoff;
	struct ctl_client *next;
};

static unsigned int nctl;
static struct ctl_client *ctl_list;
static uint64_t ctl_queued;       /* reply bytes not yet sent, all clients */
static bool ctl_paused;           /* listener off after EMFILE, until a tick */

static void ctl_close(struct ctl_client *cc)
{
	struct ctl_client **pp;

	for (pp = &ctl_list; *pp; pp = &(*pp)->next)
		if (*pp == cc) {
			*pp = cc->next;
			break;
		}
	ev_del(&cc->ev);
	close(cc->ev.fd);
	ctl_queued -= cc->outlen - cc->outoff;
	free(cc->out);
	free(cc);
	nctl--;
}

/* Build the reply to one complete request into cc->out. */
static void ctl_answer(struct ctl_client *cc, const struct ivsock_msg_hdr *req,
		       const char *arg)
{
	struct ivsock_msg_hdr h;
	json_t *j = NULL;
	char *text;
	int status = 0;
	size_t n;

	switch (req->type) {
	case IVSOCK_CTL_DOMAIN_LIST: j = ctl_json_domains(); break;
	case IVSOCK_CTL_VM_LIST:     j = ctl_json_vms(); break;
	case IVSOCK_CTL_CHANNELS:    j = ctl_json_channels(arg, &status); break;
	case IVSOCK_CTL_CHAN_DEMOTE:
	case IVSOCK_CTL_CHAN_PROMOTE: {
		bool demote = req->type == IVSOCK_CTL_CHAN_DEMOTE;

		/* changes a live connection's path: root only */
		if (cc->uid != 0) {
			status = -EPERM;
			j = json_pack("{s:s}", "error", demote ? "only root may demote a channel" :
								 "only root may move a channel");
			log_warn("control: uid %u asked to %s channel %s: refused",
				 (unsigned)cc->uid, demote ? "demote" : "move", arg);
			break;
		}
		j = demote ? ctl_chan_demote(arg, &status) : ctl_chan_promote(arg, &status);
		break;
	}
	case IVSOCK_CTL_VM_SHOW:
		j = ctl_json_vm_show(arg, &status);
		if (!j)
			j = json_pack("{s:s}", "error", "no VM with that name");
		break;
	default:
		status = -EOPNOTSUPP;
		j = json_pack("{s:s}", "error", "unknown request");
		break;
	}
	text = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	n = text ? strlen(text) : 0;
	if (n > g_daemon->conf.ctl_reply_max || n > IVSOCK_CTL_REPLY_MAX) {
		n = 0;
		status = -EMSGSIZE;
	} else if (ctl_queued + n > g_daemon->conf.ctl_queued_max) {
		/* Others have not read their replies yet: ask to come back
		 * rather than let unread replies take the daemon's memory. */
		n = 0;
		status = -EBUSY;
	}
	ivsock_msg_init(&h, req->type, (uint32_t)n, req->seq);
	h.status = status;
	free(cc->out);
	cc->out = malloc(sizeof(h) + n);
	if (!cc->out) {
		free(text);
		cc->outlen = 0;
		return;
	}
	memcpy(cc->out, &h, sizeof(h));
	if (n)
		memcpy(cc->out + sizeof(h), text, n);
	free(text);
	cc->outlen = sizeof(h) + n;
	cc->outoff = 0;
	ctl_queued += cc->outlen;
}

/* Write what we can. @return 1 done, 0 pending, -1 drop. */
static int ctl_flush(struct ctl_client *cc)
{
	while (cc->outoff < cc->outlen) {
		ssize_t n = send(cc->ev.fd, cc->out + cc->outoff, cc->outlen - cc->outoff,
				 MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 0 : -1;
		}
		cc->outoff += (size_t)n;
		ctl_queued -= (size_t)n;
		cc->active_ms = now_ms();
	}
	free(cc->out);
	cc->out = NULL;
	cc->outlen = cc->outoff = 0;
	return 1;
}

static void ctl_event(struct evsrc *src, uint32_t events)
{
	struct ctl_client *cc = (struct ctl_client *)src;
	struct ivsock_msg_hdr h;
	int rc;

	if (events & EPOLLOUT) {
		rc = ctl_flush(cc);
		if (rc < 0)
			return ctl_close(cc);
		if (rc == 1)
			ev_mod(&cc->ev, EPOLLIN);
		return;
	}
	if (cc->out)      /* one request at a time */
		return;
	for (;;) {
		size_t want = sizeof(h);
		ssize_t n;

		if (cc->inlen >= sizeof(h)) {
			memcpy(&h, cc->in, sizeof(h));
			if (ivsock_ctl_hdr_check(&h, IVSOCK_CTL_REQ_MAX) < 0) {
				log_warn("control: malformed request, closing");
				return ctl_close(cc);
			}
			want = sizeof(h) + h.len;
			if (cc->inlen == want) {
				cc->in[want] = '\0';  /* the argument as a C string */
				ctl_answer(cc, &h, (const char *)cc->in + sizeof(h));
				cc->inlen = 0;
				rc = ctl_flush(cc);
				if (rc < 0)
					return ctl_close(cc);
				if (rc == 0) {
					ev_mod(&cc->ev, EPOLLOUT);
					return;
				}
				continue;
			}
		}
		n = recv(cc->ev.fd, cc->in + cc->inlen, want - cc->inlen, MSG_DONTWAIT);
		if (n == 0)
			return ctl_close(cc);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return ctl_close(cc);
			return;
		}
		cc->inlen += (size_t)n;
		cc->active_ms = now_ms();
	}
}

static void ctl_accept_err(void *arg, int e)
{
	static uint64_t last_ms;
	uint64_t now = now_ms();

	(void)arg;
	if (now - last_ms >= 1000) {
		log_warn("control: accept: %s", strerror(e));
		last_ms = now;
	}
}

static void ctl_accept(struct evsrc *src, uint32_t events)
{
	struct daemon_conf *conf = &g_daemon->conf;

	(void)events;
	for (;;) {
		struct ctl_client *cc, *o;
		struct ucred cr = { 0, 0, 0 };
		socklen_t sl = sizeof(cr);
		unsigned int same = 0;
		int s = accept_or_shed(src->fd, ctl_accept_err, NULL);

		if (s == -EMFILE) {
			ev_del(src);
			ctl_paused = true;
		}
		if (s < 0)
			return;
		if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cr, &sl) < 0) {
			close(s);
			continue;
		}
		for (o = ctl_list; o; o = o->next)
			same += o->uid == cr.uid;
		/* One uid cannot take every slot; the idle timeout frees
		 * slots held by clients that do nothing. */
		if (nctl >= conf->ctl_clients_max || same >= conf->ctl_clients_per_uid ||
		    !(cc = calloc(1, sizeof(*cc)))) {
			static uint64_t last_ms;

			if (now_ms() - last_ms >= 1000) {
				log_warn("control: refusing a connection of uid %u (%u open, %u "
					 "of that uid)", (unsigned int)cr.uid, nctl, same);
				last_ms = now_ms();
			}
			close(s);
			continue;
		}
		cc->ev.fd = s;
		cc->ev.fn = ctl_event;
		cc->uid = cr.uid;
		cc->active_ms = now_ms();
		if (ev_add(&cc->ev, EPOLLIN) < 0) {
			close(s);
			free(cc);
			continue;
		}
		cc->next = ctl_list;
		ctl_list = cc;
		nctl++;
	}
}

void control_tick(struct daemon *dm, uint64_t now)
{
	struct ctl_client *cc, *next;

	if (ctl_paused && dm->ctl_ev.fd >= 0) {
		fd_reserve_init();
		if (ev_add(&dm->ctl_ev, EPOLLIN) == 0)
			ctl_paused = false;
	}
	for (cc = ctl_list; cc; cc = next) {
		next = cc->next;
		if (now - cc->active_ms >= dm->conf.ctl_idle_ms) {
			log_info("control: client uid %u idle for %u ms%s: closing",
				 (unsigned int)cc->uid, dm->conf.ctl_idle_ms,
				 cc->out ? " with an unread reply" : "");
			ctl_close(cc);
		}
	}
}

int control_start(struct daemon *dm, char *err, size_t errlen)
{
	int s = unix_listen(dm->conf.control, 0660, "ivsock", err, errlen);

	if (s < 0)
		return s;
	dm->ctl_ev.fd = s;
	dm->ctl_ev.fn = ctl_accept;
	if (ev_add(&dm->ctl_ev, EPOLLIN) < 0) {
		snprintf(err, errlen, "epoll: %s", strerror(errno));
		close(s);
		dm->ctl_ev.fd = -1;
		return -EIO;
	}
	return 0;
}

void control_stop(struct daemon *dm)
{
	while (ctl_list)
		ctl_close(ctl_list);
	if (dm->ctl_ev.fd < 0)
		return;
	ev_del(&dm->ctl_ev);
	close(dm->ctl_ev.fd);
	unlink(dm->conf.control);
	dm->ctl_ev.fd = -1;
}
