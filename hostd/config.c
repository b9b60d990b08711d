// SPDX-License-Identifier: MIT
/* ivsockd configuration: ini file through inih, the --domain quick syntax,
 * size/duration parsing and validation. */
#include <errno.h>
#include <grp.h>
#include <ini.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "log.h"

void conf_defaults(struct daemon_conf *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->control, sizeof(c->control), "%s", CONF_DEFAULT_CONTROL);
	c->log_level = LOG_INFO;
	c->heartbeat_ms = 100;
	c->ctl_idle_ms = 30000;
	c->ctl_clients_max = 64;
	c->ctl_clients_per_uid = 8;
	c->ctl_reply_max = 4U << 20;
	c->ctl_queued_max = 16ULL << 20;
}

/* Names separated by commas, '+' or blanks; "*" = anyone; numbers are ids.
 * Unknown names are skipped with a warning. */
static int parse_ids(const char *s, bool users, struct dom_conf *d)
{
	char buf[2048], *save = NULL, *tok;

	if (strlen(s) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s);
	if (users) {
		d->nusers = 0;
		d->any_user = false;
	} else {
		d->ngroups = 0;
	}
	for (tok = strtok_r(buf, ", \t+", &save); tok; tok = strtok_r(NULL, ", \t+", &save)) {
		char *end;
		unsigned long v;
		bool num;

		if (users && !strcmp(tok, "*")) {
			d->any_user = true;
			continue;
		}
		errno = 0;
		v = strtoul(tok, &end, 10);
		num = !errno && end != tok && !*end && v < 0xffffffffUL;
		if (!num) {
			if (users) {
				struct passwd *pw = getpwnam(tok);

				if (!pw) {
					log_info("domain %s: user '%s' does not exist, skipped",
						 d->name, tok);
					continue;
				}
				v = pw->pw_uid;
			} else {
				struct group *gr = getgrnam(tok);

				if (!gr) {
					log_info("domain %s: group '%s' does not exist, skipped",
						 d->name, tok);
					continue;
				}
				v = gr->gr_gid;
			}
		}
		if (users) {
			if (d->nusers == CONF_IDS_MAX)
				return -EINVAL;
			d->users[d->nusers++] = (uid_t)v;
		} else {
			if (d->ngroups == CONF_IDS_MAX)
				return -EINVAL;
			d->groups[d->ngroups++] = (gid_t)v;
		}
	}
	return 0;
}

bool conf_admits(const struct dom_conf *d, uid_t uid, gid_t gid)
{
	unsigned int i;

	if (d->any_user)
		return true;
	for (i = 0; i < d->nusers; i++)
		if (d->users[i] == uid)
			return true;
	for (i = 0; i < d->ngroups; i++)
		if (d->groups[i] == gid)
			return true;
	return false;
}

void dom_conf_defaults(struct dom_conf *d, const char *name)
{
	memset(d, 0, sizeof(*d));
	snprintf(d->name, sizeof(d->name), "%s", name);
	snprintf(d->socket, sizeof(d->socket), "/run/ivsock/%s.sock", name);
	snprintf(d->backing, sizeof(d->backing), "memfd");
	d->region_size = 256ULL << 20;
	d->vectors = 4;
	d->ring_size = 128 * 1024;
	d->max_vms = 16;
	d->max_connections = 0; /* by the region's size, conf_region_params() */
	d->max_listeners = 1024;
	d->grace_ms = 10000;
	d->socket_mode = 0660;
	d->register_ms = 30000;
	d->shrink_idle_ms = 10000;
	d->reclaim_idle_ms = 5000;
	d->reclaim_free_pct = 2;
	/* Default admission: root and the users QEMU runs as under libvirt
	 * (Debian: libvirt-qemu) or as a distribution service (qemu). */
	parse_ids("root libvirt-qemu qemu", true, d);
}

int conf_parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	int shift = 0;

	if (!s || !*s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case '\0': break;
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	default: return -EINVAL;
	}
	if (*end == 'i' || *end == 'B')
		end++;
	if (*end == 'B')
		end++;
	if (*end || (shift && v > (~0ULL >> shift)))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

static int parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out);

int conf_parse_classes(const char *s, struct dom_conf *d)
{
	char buf[256], *save = NULL, *tok;
	uint32_t n = 0, sum = 0;
	uint32_t size[IVSOCK_CLASS_MAX], share[IVSOCK_CLASS_MAX];

	if (!s || strlen(s) >= sizeof(buf))
		return -EINVAL;
	snprintf(buf, sizeof(buf), "%s", s);
	for (tok = strtok_r(buf, ", \t+", &save); tok; tok = strtok_r(NULL, ", \t+", &save)) {
		char *colon = strchr(tok, ':');
		uint64_t sz;
		uint32_t sh;

		if (!colon || n >= IVSOCK_CLASS_MAX)
			return -EINVAL;
		*colon = '\0';
		if (conf_parse_size(tok, &sz) < 0 || sz < IVSOCK_BLOCK_RING_MIN ||
		    sz > IVSOCK_BLOCK_RING_MAX || (sz & (sz - 1)))
			return -EINVAL;
		if (parse_u32(colon + 1, 0, 100, &sh) < 0)
			return -EINVAL;
		if (n && sz <= size[n - 1])
			return -EINVAL; /* increasing sizes, one class each */
		size[n] = (uint32_t)sz;
		share[n] = sh;
		sum += sh;
		n++;
	}
	if (!n || sum > 100)
		return -EINVAL;
	d->nclasses = n;
	memset(d->class_size, 0, sizeof(d->class_size));
	memset(d->class_share, 0, sizeof(d->class_share));
	memcpy(d->class_size, size, n * sizeof(size[0]));
	memcpy(d->class_share, share, n * sizeof(share[0]));
	return 0;
}

int conf_region_params(const struct dom_conf *d, struct ivsock_region_params *p)
{
	uint32_t k;

	if (!d->nclasses && d->ring_size_set) {
		ivsock_region_params_single(p, d->ring_size);
	} else {
		ivsock_region_params_default(p);
		if (d->nclasses) {
			p->nclasses = d->nclasses;
			memcpy(p->class_size, d->class_size, sizeof(p->class_size));
			memcpy(p->class_share, d->class_share, sizeof(p->class_share));
			/* default class: the one of ring_size; without ring_size
			 * the largest class <= 128K, else the smallest */
			p->default_class = 0;
			for (k = 0; k < p->nclasses; k++)
				if (p->class_size[k] <= (d->ring_size_set ? d->ring_size : 128 * 1024))
					p->default_class = k;
			if (d->ring_size_set && p->class_size[p->default_class] != d->ring_size)
				return -EINVAL;
		}
	}
	p->vm_cap = d->max_vms;
	/* Default: one connection per 16 KiB of region, at most 16384 (a
	 * 256 MiB region: 16384, 4 MiB of tables); a small region keeps its
	 * tables small. */
	p->channel_cap = d->max_connections ? d->max_connections :
			 (uint32_t)(d->region_size / (16 * 1024) > 16384 ? 16384 :
				    d->region_size / (16 * 1024) < 64 ? 64 :
				    d->region_size / (16 * 1024));
	p->offer_cap = p->channel_cap; /* rounded up to a power of two */
	p->listener_cap = d->max_listeners;
	return 0;
}

int conf_parse_duration(const char *s, uint32_t *ms)
{
	char *end;
	unsigned long v;
	unsigned long mul = 1000;

	if (!s || !*s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	if (!strcmp(end, "ms"))
		mul = 1;
	else if (!strcmp(end, "s") || !*end)
		mul = 1000;
	else if (!strcmp(end, "m") || !strcmp(end, "min"))
		mul = 60000;
	else
		return -EINVAL;
	if (v > 86400000UL / mul)
		return -EINVAL;
	*ms = (uint32_t)(v * mul);
	return 0;
}

bool conf_allowed(const struct dom_conf *d, const char *name)
{
	unsigned int i;

	if (!d->nallow)
		return true;
	for (i = 0; i < d->nallow; i++)
		if (!strcmp(d->allow[i], name))
			return true;
	return false;
}

const struct dom_conf *conf_find_domain(const struct daemon_conf *c, const char *name)
{
	unsigned int i;

	for (i = 0; i < c->ndomains; i++)
		if (!strcmp(c->domains[i].name, name))
			return &c->domains[i];
	return NULL;
}

static int parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 0);
	if (errno || end == s || *end || *s == '-' || v < lo || v > hi)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

static int parse_bool(const char *s, bool *out)
{
	if (!strcasecmp(s, "yes") || !strcasecmp(s, "true") || !strcmp(s, "1") ||
	    !strcasecmp(s, "on"))
		*out = true;
	else if (!strcasecmp(s, "no") || !strcasecmp(s, "false") || !strcmp(s, "0") ||
		 !strcasecmp(s, "off"))
		*out = false;
	else
		return -EINVAL;
	return 0;
}

/* Names separated by commas, '+' or blanks. */
static int parse_allow(struct dom_conf *d, const char *s)
{
	char buf[4096], *save = NULL, *tok;

	if (strlen(s) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s);
	d->nallow = 0;
	for (tok = strtok_r(buf, ", \t+", &save); tok; tok = strtok_r(NULL, ", \t+", &save)) {
		if (d->nallow == CONF_ALLOW_MAX || strlen(tok) >= CONF_NAME_MAX)
			return -EINVAL;
		snprintf(d->allow[d->nallow++], CONF_NAME_MAX, "%s", tok);
	}
	return 0;
}

static int copy_str(char *dst, size_t len, const char *s)
{
	if (!*s || strlen(s) >= len)
		return -EINVAL;
	memcpy(dst, s, strlen(s) + 1);
	return 0;
}

/* One domain key; shared by the ini handler and the quick syntax. */
static int dom_set(struct dom_conf *d, const char *key, const char *val)
{
	uint64_t sz;

	if (!strcmp(key, "socket"))
		return copy_str(d->socket, sizeof(d->socket), val);
	if (!strcmp(key, "region_size") || !strcmp(key, "size")) {
		if (conf_parse_size(val, &sz) < 0)
			return -EINVAL;
		d->region_size = sz;
		return 0;
	}
	if (!strcmp(key, "backing"))
		return copy_str(d->backing, sizeof(d->backing), val);
	if (!strcmp(key, "vectors"))
		return parse_u32(val, 1, 64, &d->vectors);
	if (!strcmp(key, "ring_size") || !strcmp(key, "ring")) {
		if (conf_parse_size(val, &sz) < 0 || sz > (1U << 30))
			return -EINVAL;
		d->ring_size = (uint32_t)sz;
		d->ring_size_set = true;
		return 0;
	}
	if (!strcmp(key, "ring_classes") || !strcmp(key, "classes"))
		return conf_parse_classes(val, d);
	if (!strcmp(key, "max_vms"))
		return parse_u32(val, 1, 254, &d->max_vms);
	if (!strcmp(key, "max_connections"))
		return parse_u32(val, 16, 1U << 20, &d->max_connections);
	if (!strcmp(key, "max_listeners"))
		return parse_u32(val, 1, 65536, &d->max_listeners);
	if (!strcmp(key, "grace_period") || !strcmp(key, "grace"))
		return conf_parse_duration(val, &d->grace_ms);
	if (!strcmp(key, "allow"))
		return parse_allow(d, val);
	if (!strcmp(key, "allow_users") || !strcmp(key, "users"))
		return parse_ids(val, true, d);
	if (!strcmp(key, "allow_groups") || !strcmp(key, "groups"))
		return parse_ids(val, false, d);
	if (!strcmp(key, "register_timeout"))
		return conf_parse_duration(val, &d->register_ms);
	if (!strcmp(key, "shrink_idle"))
		return conf_parse_duration(val, &d->shrink_idle_ms);
	if (!strcmp(key, "reclaim_idle"))
		return conf_parse_duration(val, &d->reclaim_idle_ms);
	if (!strcmp(key, "reclaim_free"))
		return parse_u32(val, 0, 50, &d->reclaim_free_pct);
	if (!strcmp(key, "shared_addresses"))
		return parse_bool(val, &d->shared_addrs);
	if (!strcmp(key, "socket_mode")) {
		uint32_t m;

		if (parse_u32(val, 0, 0777, &m) < 0)
			return -EINVAL;
		d->socket_mode = m;
		return 0;
	}
	return -ENOENT;
}

struct ini_ctx {
	struct daemon_conf *c;
	char *err;
	size_t errlen;
};

static int conf_ini_handler(void *user, const char *section, const char *name,
		       const char *value)
{
	struct ini_ctx *x = user;
	struct daemon_conf *c = x->c;
	int rc;

	if (!strcmp(section, "daemon")) {
		if (!strcmp(name, "control"))
			rc = copy_str(c->control, sizeof(c->control), value);
		else if (!strcmp(name, "log_level"))
			rc = (c->log_level = log_level_parse(value)) < 0 ? -EINVAL : 0;
		else if (!strcmp(name, "heartbeat"))
			rc = conf_parse_duration(value, &c->heartbeat_ms) < 0 ||
			     c->heartbeat_ms < 10 ? -EINVAL : 0;
		else if (!strcmp(name, "control_idle_timeout"))
			rc = conf_parse_duration(value, &c->ctl_idle_ms) < 0 ||
			     c->ctl_idle_ms < 100 ? -EINVAL : 0;
		else if (!strcmp(name, "control_clients_max"))
			rc = parse_u32(value, 1, 4096, &c->ctl_clients_max);
		else if (!strcmp(name, "control_clients_per_uid"))
			rc = parse_u32(value, 1, 4096, &c->ctl_clients_per_uid);
		else if (!strcmp(name, "control_reply_max")) {
			uint64_t sz;

			rc = conf_parse_size(value, &sz) < 0 || sz < 4096 ||
			     sz > (16U << 20) ? -EINVAL : 0;
			if (!rc)
				c->ctl_reply_max = (uint32_t)sz;
		} else if (!strcmp(name, "control_queued_max"))
			rc = conf_parse_size(value, &c->ctl_queued_max) < 0 ||
			     c->ctl_queued_max < 4096 ? -EINVAL : 0;
		else
			rc = -ENOENT;
	} else if (!strncmp(section, "domain ", 7)) {
		const char *dn = section + 7;
		struct dom_conf *d = NULL;
		unsigned int i;

		while (*dn == ' ' || *dn == '"')
			dn++;
		for (i = 0; i < c->ndomains; i++)
			if (!strncmp(c->domains[i].name, dn, strcspn(dn, "\"")) &&
			    strlen(c->domains[i].name) == strcspn(dn, "\""))
				d = &c->domains[i];
		if (!d) {
			char nm[CONF_NAME_MAX];
			size_t n = strcspn(dn, "\"");

			if (!n || n >= sizeof(nm) || c->ndomains == CONF_DOMAINS_MAX) {
				snprintf(x->err, x->errlen, "bad domain section [%s]", section);
				return 0;
			}
			memcpy(nm, dn, n);
			nm[n] = '\0';
			d = &c->domains[c->ndomains++];
			dom_conf_defaults(d, nm);
		}
		rc = dom_set(d, name, value);
	} else {
		snprintf(x->err, x->errlen, "unknown section [%s]", section);
		return 0;
	}
	if (rc == -ENOENT)
		snprintf(x->err, x->errlen, "[%s]: unknown key '%s'", section, name);
	else if (rc < 0)
		snprintf(x->err, x->errlen, "[%s]: bad value for %s: '%s'", section, name, value);
	return rc == 0;
}

int conf_load(struct daemon_conf *c, const char *path, char *err, size_t errlen)
{
	struct ini_ctx x = { c, err, errlen };
	char why[256] = "";
	int line;

	x.err = why;
	x.errlen = sizeof(why);
	line = ini_parse(path, conf_ini_handler, &x);
	if (line == -1) {
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return -errno ? -errno : -ENOENT;
	}
	if (line != 0) {
		snprintf(err, errlen, "%s:%d: %s", path, line, why[0] ? why : "syntax error");
		return -EINVAL;
	}
	return 0;
}

int conf_add_quick_domain(struct daemon_conf *c, const char *spec, char *err, size_t errlen)
{
	char buf[1024], *eq, *opt, *save = NULL;
	struct dom_conf *d;

	if (strlen(spec) >= sizeof(buf) || c->ndomains == CONF_DOMAINS_MAX) {
		snprintf(err, errlen, "--domain %s: too long or too many domains", spec);
		return -EINVAL;
	}
	strcpy(buf, spec);
	eq = strchr(buf, '=');
	if (!eq || eq == buf || (size_t)(eq - buf) >= CONF_NAME_MAX) {
		snprintf(err, errlen, "--domain %s: expected NAME=SOCKPATH[,key=value...]", spec);
		return -EINVAL;
	}
	*eq = '\0';
	d = &c->domains[c->ndomains];
	dom_conf_defaults(d, buf);
	d->region_size = 64ULL << 20; /* quick mode: lab-sized default */
	opt = strtok_r(eq + 1, ",", &save);
	if (!opt || copy_str(d->socket, sizeof(d->socket), opt) < 0) {
		snprintf(err, errlen, "--domain %s: missing or too long socket path", spec);
		return -EINVAL;
	}
	while ((opt = strtok_r(NULL, ",", &save))) {
		char *v = strchr(opt, '=');
		int rc;

		if (!v) {
			snprintf(err, errlen, "--domain %s: '%s' is not key=value", spec, opt);
			return -EINVAL;
		}
		*v++ = '\0';
		rc = dom_set(d, opt, v);
		if (rc < 0) {
			snprintf(err, errlen, "--domain %s: %s key '%s'", spec,
				 rc == -ENOENT ? "unknown" : "bad value for", opt);
			return -EINVAL;
		}
	}
	c->ndomains++;
	return 0;
}

int conf_validate(const struct daemon_conf *c, char *err, size_t errlen)
{
	unsigned int i, j;

	for (i = 0; i < c->ndomains; i++) {
		const struct dom_conf *d = &c->domains[i];

		if (d->region_size < (1ULL << 20) || (d->region_size & (d->region_size - 1))) {
			snprintf(err, errlen, "domain %s: region_size %llu is not a power of "
				 "two of at least 1M (QEMU's BAR2 must be a power of two)",
				 d->name, (unsigned long long)d->region_size);
			return -EINVAL;
		}
		if (strcmp(d->backing, "memfd") && strcmp(d->backing, "hugetlb")) {
			snprintf(err, errlen, "domain %s: backing %s: only backing=memfd or "
				 "backing=hugetlb is supported (a file on /dev/shm or hugetlbfs "
				 "cannot be sealed: any client could truncate it and crash "
				 "ivsockd, QEMU and the agents); a restart keeps the region "
				 "through systemd's file descriptor store, see ivsockd(8)",
				 d->name, d->backing);
			return -EINVAL;
		}
		if (d->ring_size < IVSOCK_BLOCK_RING_MIN || (d->ring_size & (d->ring_size - 1))) {
			snprintf(err, errlen, "domain %s: ring_size %u is not a power of two >= 1K",
				 d->name, d->ring_size);
			return -EINVAL;
		}
		{
			struct ivsock_region_params p;

			if (conf_region_params(d, &p) < 0) {
				snprintf(err, errlen, "domain %s: ring_size %u is not one of "
					 "its ring_classes", d->name, d->ring_size);
				return -EINVAL;
			}
		}
		for (j = 0; j < i; j++) {
			if (!strcmp(c->domains[j].name, d->name)) {
				snprintf(err, errlen, "domain %s defined twice", d->name);
				return -EINVAL;
			}
			if (!strcmp(c->domains[j].socket, d->socket)) {
				snprintf(err, errlen, "domains %s and %s share socket %s",
					 c->domains[j].name, d->name, d->socket);
				return -EINVAL;
			}
		}
	}
	return 0;
}
