/* SPDX-License-Identifier: MIT */
/*
 * ivsockd's private model: the daemon, its trust domains (one ivshmem server
 * socket and one region each), the connected clients and the per-VM-slot
 * bookkeeping. Single-threaded: everything runs from one epoll loop.
 */
#ifndef IVSOCKD_H
#define IVSOCKD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ivsock/layout.h"
#include "config.h"
#include "peers.h"

/* Something registered with epoll; data.ptr points at it. */
struct evsrc {
	int fd;
	void (*fn)(struct evsrc *src, uint32_t events);
};

/* One pending ivshmem message to a client that is not reading fast enough. */
struct outmsg {
	int64_t value;
	int fd;                   /* owned (a dup), -1 for none */
};

#define CLIENT_QUEUE_MAX  4096    /* pending messages before we drop the client */
#define CLIENT_QFDS_MAX   512     /* pending descriptors (dups we hold) per client */
#define CLIENT_RX_MAX     65536   /* bytes a client may send us (protocol is one-way) */

struct domain;

struct client {
	struct evsrc ev;
	struct domain *dom;
	struct client *next;
	uint32_t peer_id;
	int vm;                   /* directory index */
	uint32_t vm_gen;
	pid_t pid;
	uid_t uid;                /* SO_PEERCRED at admission */
	gid_t gid;
	bool qemu;                /* /proc/PID/cmdline names QEMU (a name, not a credential) */
	bool registered;          /* REGISTER accepted */
	bool introduced;          /* a well-formed REGISTER arrived (accepted or not) */
	bool stored;              /* its descriptors are in systemd's fd store */
	bool restored;            /* taken back from the fd store at start */
	struct peer_fds fds;      /* our eventfds for this peer */
	/* The daemon's doorbell as this client alone knows it: the eventfds
	 * it was given for the daemon's peer ID. A ring on dfds.fd[0] can come
	 * only from this client, so it is what identifies a mailbox request's
	 * writer (never the mailbox index). */
	struct peer_fds dfds;
	struct evsrc bell_ev;
	uint32_t qfds;            /* descriptors among the queued messages */
	struct outmsg *q;         /* ring of pending messages */
	uint32_t qhead, qlen, qcap;
	bool out_armed;
	bool doomed;              /* drop at the end of this event */
	const char *why;          /* ... and why (static string) */
	uint64_t rx_discarded;
	uint64_t connected_ms;
};

enum vmslot_state { VMSLOT_FREE = 0, VMSLOT_LIVE, VMSLOT_DEAD, VMSLOT_ORPHAN };

/* Daemon-private state of directory entry i (the region holds the rest). */
struct vmslot {
	enum vmslot_state state;
	struct client *c;         /* LIVE only */
	uint32_t mb_seen;         /* last req_seq we answered */
	uint32_t peer_id;         /* DEAD/ORPHAN: reserved until reclaimed (ORPHAN) */
	uint64_t dead_ms;
	uint64_t hb_last;         /* ORPHAN: agent heartbeat seen last ... */
	uint64_t hb_ms;           /* ... and when it last moved */
};

struct domain {
	struct dom_conf conf;
	struct evsrc listen_ev;   /* ivshmem server socket */
	int shm_fd;
	void *base;
	struct ivsock_region rg;
	bool adopted;             /* region re-attached after a restart */
	bool stored;              /* region and listener are in the fd store */
	bool listen_paused;       /* EMFILE without a spare: until the next tick */
	struct peer_ids ids;
	uint32_t self_id;         /* daemon's peer ID */
	struct client *clients;
	unsigned int nclients;
	struct vmslot *slots;     /* rg.vm_cap entries */
	uint64_t accepted, refused, dropped, restored, forged;
	uint64_t demotes;         /* channels demoted to TCP by operator requests */
	uint64_t resizes;         /* channels moved to another ring by operator requests */
	uint64_t tcp_promotes;    /* connections on TCP asked onto a ring by operator requests */
	uint64_t reclaimed;       /* idle connections moved to TCP under pressure (policy.c) */
	uint64_t shrunk;          /* idle connections that gave back a large ring (policy.c) */
	struct chan_seen *seen;   /* policy.c: per channel, when its rings last moved */
	uint64_t policy_ms;       /* policy.c: its last look */
	struct domain *next;
};

struct daemon {
	struct daemon_conf conf;
	bool exiting;             /* shutting down: keep the fd store as it is */
	int reserve_fd;           /* spare descriptor, given up at EMFILE to accept */
	uint32_t queued_fds;      /* descriptors held in all clients' queues */
	uint32_t queued_fds_max;
	char conf_path[256];      /* "" in quick mode */
	int epfd;
	struct evsrc sig_ev, tick_ev, ctl_ev;
	struct domain *domains;
	bool stop, reload;
	uint64_t start_ms;
};

extern struct daemon *g_daemon;

uint64_t now_ms(void);
int ev_add(struct evsrc *src, uint32_t events);
int ev_mod(struct evsrc *src, uint32_t events);
void ev_del(struct evsrc *src);

/* region.c: create and format a sealed memfd, or adopt stored_fd (>= 0,
 * from the fd store; consumed). @return 0 or -errno. */
int region_open(struct domain *d, int stored_fd, char *err, size_t errlen);
/* Is fd a memfd of size bytes with shrink/grow/seal seals? @return 0/-errno. */
int region_check_fd(int fd, uint64_t size, char *err, size_t errlen);
void region_close(struct domain *d, bool stopping);

/* policy.c: the ring policy (rings taken back from idle connections). */
int policy_init(struct domain *d);
void policy_fini(struct domain *d);
void policy_tick(struct domain *d, uint64_t now);

/* domain.c: the ivshmem server. */
int domain_start(struct domain *d, char *err, size_t errlen);
void domain_stop(struct domain *d);
struct domain *domain_find(const char *name);
struct client *domain_client_by_peer(struct domain *d, uint32_t peer_id);
/* Queue (or send) one ivshmem message; fd is duplicated. Dooms the client
 * if its queue overflows. */
void client_send(struct client *c, int64_t value, int fd);
/* Close and free a client (no announcements: see lifecycle_disconnect). */
void client_free(struct client *c);
/* Listen on a UNIX socket path (refused if someone serves it already);
 * chmod mode, chgrp group if it exists. @return fd or -errno. */
int unix_listen(const char *path, unsigned int mode, const char *group,
		char *err, size_t errlen);
/* Ring (peer, vector) of this domain. @return 0 or -ENOENT. */
int domain_ring(struct domain *d, uint32_t peer_id, uint32_t vector);
void domain_ring_cb(void *arg, uint32_t peer_id, uint32_t vector);

/* domain.c: drop clients that did not register in time. */
void domain_tick(struct domain *d, uint64_t now);
/* A descriptor is about to be needed (accept): make room at EMFILE. */
void fd_reserve_init(void);
/* accept4 (non-blocking, cloexec) that sheds connections at EMFILE/ENFILE
 * using the reserve descriptor; on_err(arg, errno) is told of failures.
 * @return a socket, -EAGAIN (nothing more to accept now) or -EMFILE (no
 * spare descriptor: pause the listener until the next tick). */
int accept_or_shed(int lfd, void (*on_err)(void *, int), void *arg);

/* mailbox.c */
void mailbox_reset(struct domain *d, int vm);
/* Serve the pending request of client c's own mailbox, if any (called when
 * c's private daemon doorbell rang). @return 1 if one was answered. */
int mailbox_serve_client(struct client *c);

/* lifecycle.c */
void lifecycle_disconnect(struct client *c, const char *why);
/* Reclaim dead VMs whose channels are gone or whose grace ran out. */
void lifecycle_tick(struct domain *d, uint64_t now);
/* After adopting a region: previous VMs become orphans. */
void lifecycle_adopt(struct domain *d);

/* control.c */
int control_start(struct daemon *dm, char *err, size_t errlen);
void control_stop(struct daemon *dm);
/* Drop control clients idle (no request, no progress) for ctl_idle_ms. */
void control_tick(struct daemon *dm, uint64_t now);

#endif
