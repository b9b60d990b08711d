/* SPDX-License-Identifier: MIT */
/* ivsockd configuration: the [daemon] section, one [domain NAME] section per
 * trust domain, and the --domain quick syntax of the command line. */
#ifndef IVSOCKD_CONFIG_H
#define IVSOCKD_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "ivsock/layout.h"
#include <sys/types.h>
#include <sys/un.h>

#define CONF_NAME_MAX   64
#define CONF_PATH_MAX   sizeof(((struct sockaddr_un *)0)->sun_path)
#define CONF_ALLOW_MAX  64
#define CONF_DOMAINS_MAX 32
#define CONF_IDS_MAX    32

#define CONF_DEFAULT_FILE    "/etc/ivsock/ivsockd.conf"
#define CONF_DEFAULT_CONTROL "/run/ivsock/control.sock"

struct dom_conf {
	char name[CONF_NAME_MAX];
	char socket[CONF_PATH_MAX];
	char backing[256];        /* "memfd" or a file path */
	uint64_t region_size;     /* bytes, power of two */
	uint32_t vectors;         /* per peer, 1..64 */
	uint32_t ring_size;       /* bytes per ring of the default class, power of two */
	bool ring_size_set;       /* ring_size given explicitly */
	/* ring_classes = size:share,... (0 classes: not given). Without it, a
	 * ring_size given alone means one class of that size (the v3 region);
	 * neither: the default classes (ivsock_region_params_default()). */
	uint32_t nclasses;
	uint32_t class_size[IVSOCK_CLASS_MAX];
	uint32_t class_share[IVSOCK_CLASS_MAX];
	uint32_t max_vms;         /* directory capacity, 1..254 */
	uint32_t max_connections; /* channel table (and offer table) capacity */
	uint32_t max_listeners;   /* listener table capacity */
	uint32_t grace_ms;        /* dead VM partition kept this long at most */
	bool shared_addrs;        /* may two live VMs claim one address? */
	unsigned int socket_mode;
	unsigned int nallow;      /* 0 = any VM name */
	char allow[CONF_ALLOW_MAX][CONF_NAME_MAX];
	/* Admission (SO_PEERCRED of the connecting process): admitted if its
	 * uid is in users or its gid in groups. any_user: "*" given. Unknown
	 * names are skipped (with a warning at load). */
	bool any_user;
	unsigned int nusers, ngroups;
	uid_t users[CONF_IDS_MAX];
	gid_t groups[CONF_IDS_MAX];
	uint32_t register_ms;     /* non-QEMU client must REGISTER in this; 0 = no limit */
	/* ring policy (policy.c); 0 ms = that rule off */
	uint32_t shrink_idle_ms;  /* a ring above the default class idle this long is taken back */
	uint32_t reclaim_idle_ms; /* under pressure: connections idle this long are moved to TCP */
	uint32_t reclaim_free_pct;/* pressure: fewer free blocks of a class than this % of the quota */
};

struct daemon_conf {
	char control[CONF_PATH_MAX];
	int log_level;            /* LOG_* */
	uint32_t heartbeat_ms;
	/* Control socket limits. */
	uint32_t ctl_idle_ms;          /* no request / no progress: dropped */
	uint32_t ctl_clients_max;      /* connections in all */
	uint32_t ctl_clients_per_uid;  /* connections of one uid */
	uint32_t ctl_reply_max;        /* bytes of one reply (else -EMSGSIZE) */
	uint64_t ctl_queued_max;       /* bytes queued for all clients (else -EBUSY) */
	unsigned int ndomains;
	struct dom_conf domains[CONF_DOMAINS_MAX];
};

void conf_defaults(struct daemon_conf *c);
void dom_conf_defaults(struct dom_conf *d, const char *name);

/*
 * Parse an ini file into c (which holds defaults). On error writes a
 * message naming file and line into err. @return 0 or -EINVAL / -errno.
 */
int conf_load(struct daemon_conf *c, const char *path, char *err, size_t errlen);

/*
 * Quick mode: "NAME=SOCKPATH[,size=64M,vectors=4,ring=128K,max_vms=N,
 * grace=10s,backing=memfd|PATH,allow=a+b]". Appends a domain.
 * @return 0 or -EINVAL with err set.
 */
int conf_add_quick_domain(struct daemon_conf *c, const char *spec, char *err, size_t errlen);

/* Check every domain (power-of-two sizes, unique names and sockets).
 * @return 0 or -EINVAL with err set. */
int conf_validate(const struct daemon_conf *c, char *err, size_t errlen);

/* "256M", "128K", "1G", "65536" -> bytes. @return 0 or -EINVAL. */
int conf_parse_size(const char *s, uint64_t *out);
/* "4K:10,32K:20,128K:50,1M:20" -> sizes and shares. @return 0 or -EINVAL. */
int conf_parse_classes(const char *s, struct dom_conf *d);
/* Region format parameters of a domain (classes, default class, max_vms).
 * @return 0, or -EINVAL if ring_size names no class of ring_classes. */
int conf_region_params(const struct dom_conf *d, struct ivsock_region_params *p);
/* "10s", "500ms", "2m", "3" (seconds) -> milliseconds. @return 0 or -EINVAL. */
int conf_parse_duration(const char *s, uint32_t *ms);
/* Is name allowed in domain d (empty list: any)? */
bool conf_allowed(const struct dom_conf *d, const char *name);
/* May a process with these credentials connect to domain d? */
bool conf_admits(const struct dom_conf *d, uid_t uid, gid_t gid);

const struct dom_conf *conf_find_domain(const struct daemon_conf *c, const char *name);

#endif
