/* SPDX-License-Identifier: MIT */
/*
 * ivsock-agent's state: options, the backend, the shim clients, the mailbox
 * to ivsockd, and the epoll loop tying them together.
 */
#ifndef AGENT_AGENT_H
#define AGENT_AGENT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "ivsock/msg.h"
#include "backend.h"
#include "broker.h"
#include "ids.h"
#include "mailbox.h"

struct agent_opts {
	const char *backend;      /* "server" or "pci" */
	const char *server;       /* ivsockd domain socket (server backend) */
	const char *device;       /* /dev/ivsockN (pci backend) */
	const char *listen;       /* NULL: abstract "\0ivsock-agent"; "@x": abstract; path */
	const char *allow_users;  /* NULL: every local user; else comma-separated
				   * user names/uids admitted (plus root and us) */
	const char *allow_groups; /* the same for groups (primary or supplementary) */
	const char *hostname;     /* NULL: gethostname() */
	long max_chans;           /* channel ends per non-root uid; -1: default */
	long max_listeners;       /* listeners per non-root uid; -1: default */
	long ring_share;          /* percent of each ring class per uid; -1: 50 */
	long spin_us;             /* poll without sleeping after a request; -1: 0 */
	long hold_us;             /* --accept-hold-us; -1: 50000 */
	long max_per_uid;         /* connections per non-root uid; -1: default
				   * (1/8 of the fd limit, 8..1024), 0: no cap */
	bool foreground;
	int verbose;
};

/* epoll tags: every registered fd's data.ptr points at one of these. */
enum agent_ev_kind { EV_LISTEN = 1, EV_CLIENT, EV_CTL, EV_VEC0, EV_NETLINK, EV_TIMER, EV_SIGNAL };

struct agent_ev {
	int kind;
};

struct agent_client {
	struct agent_ev ev;        /* EV_CLIENT */
	struct agent_client *next;
	int fd;
	pid_t pid;                 /* SO_PEERCRED at connect: admission is
				    * decided once, there (a process that
				    * connected as root keeps it after setuid) */
	uid_t uid;
	bool allowed;              /* always true for accepted clients (refused
				    * ones are closed at accept); kept as a
				    * second line of defence */
	bool hello;                /* a client id and vector were assigned */
	uint32_t id;
	uint32_t vector;
	int be_fd;                 /* pci: this client's own open of the device
				    * (its eventfd binding dies with it), or -1 */
	/* what it holds, for the per-uid limits (broker.c) */
	uint32_t ends, listeners;
	uint32_t blocks[IVSOCK_CLASS_MAX];
	uint32_t tracked;          /* TCP entries it holds (TRACK) */
};

#define AGENT_ALLOW_MAX 32

struct agent_stats {
	unsigned long opened, accepted, refused_open, refused_accept, bad_close;
	unsigned long late_offers;      /* came after the ACCEPT: refused (late.c) */
	unsigned long held_accepts;     /* ACCEPTs whose offer came while held */
	unsigned long bad_port;         /* PORTs refused (channel abandoned) */
	unsigned long tracked, refused_track; /* TCP entries recorded / refused */
};

struct agent {
	struct agent_opts opt;
	struct agent_backend be;
	int epfd;
	int lfd;
	struct agent_ev ev_listen, ev_ctl, ev_vec0, ev_nl, ev_timer, ev_sig;
	int nlfd, tfd, sigfd;
	/* admission: empty lists (and !restricted) = every local user */
	bool restricted;
	uint32_t nallow_uid, nallow_gid;
	uid_t allow_uid[AGENT_ALLOW_MAX];
	gid_t allow_gid[AGENT_ALLOW_MAX];
	uid_t euid;
	struct broker_limits limits;
	struct agent_stats stats;
	uint64_t busy_until_ns;         /* spin (poll without sleeping) until then */
	uint64_t spin_ns;               /* --spin-us: how long after a request */
	/* ACCEPTs that found no offer (late.c) */
	struct broker_late late[BROKER_LATE_MAX];
	unsigned late_next, nlate;
	struct broker_held held[BROKER_HELD_MAX];
	unsigned nheld;
	uint64_t hold_ns;               /* --accept-hold-us */
	uint64_t test_open_delay_ns;    /* IVSOCK_AGENT_TEST_OPEN_DELAY_US (tests) */
	struct agent_client *clients;
	unsigned long nclients;
	unsigned long max_per_uid;      /* effective cap, 0: none */
	int reserve_fd;                 /* spent to accept-and-close at EMFILE */
	bool listen_paused;             /* out of fds: listening fd off epoll */
	uint64_t listen_resume_ms;
	unsigned long refused, capped, shed;  /* connections closed at accept */
	struct agent_ids ids;
	/* registration with ivsockd */
	struct agent_mb mb;
	struct ivsock_mb_register reg;  /* what we register (or will) */
	bool want_register;             /* addresses changed or never answered */
	bool registered;
	int32_t reg_status;             /* last answer */
	uint64_t reg_answer_ms;
	bool warned_no_answer;
	uint64_t last_rescan_ms;
	bool running;
	bool failed;                    /* stopped because the region changed */
};

/* clients.c */
int agent_listen_open(struct agent *a);
void agent_accept(struct agent *a);
/* Tick: put the listening fd back on epoll after an fd-exhaustion pause. */
void agent_listen_tick(struct agent *a, uint64_t now_ms);
void agent_client_event(struct agent *a, struct agent_client *c, uint32_t events);
void agent_clients_close_all(struct agent *a);
/* Send a reply (header + payload) with up to two fds on c's connection,
 * never blocking. @return 0 or -errno. */
int agent_reply(struct agent_client *c, uint16_t type, uint32_t seq, int32_t status,
		const void *payload, uint32_t len, const int *fds, int nfds);

/* admission.c: parse --allow-user/--allow-group (@return 0 or -EINVAL),
 * and the per-uid limits once the region is known. */
int agent_admission_init(struct agent *a);
void agent_limits_init(struct agent *a);

/* status.c: STATUS JSON (malloc'd, NUL-terminated) or NULL. The clients
 * list shows every client (pid, uid) only to a viewer that connected as
 * root (all); others see only the clients of their own uid. */
char *agent_status_json(struct agent *a, bool all, uid_t uid);

#endif
