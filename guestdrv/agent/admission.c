// SPDX-License-Identifier: MIT
/* Who may use the agent: every local user by default; --allow-user and
 * --allow-group (comma-separated names or numeric ids) restrict it. Root
 * and the agent's own user are always admitted. */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "log.h"

/* Parse "a,b,c" into ids with lookup(). @return 0 or -EINVAL (logged). */
static int parse_list(const char *list, const char *what, bool group, uint32_t *n,
		      uint32_t *ids)
{
	char *copy = strdup(list), *save = NULL, *tok;
	int rc = 0;

	if (!copy)
		return -ENOMEM;
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		unsigned long id;
		char *end;

		if (*n >= AGENT_ALLOW_MAX) {
			log_err("--allow-%s: more than %u entries", what, AGENT_ALLOW_MAX);
			rc = -EINVAL;
			break;
		}
		errno = 0;
		id = strtoul(tok, &end, 10);
		if (*tok && !*end && !errno && id < 0xffffffffUL) {
			ids[(*n)++] = (uint32_t)id;
			continue;
		}
		if (group) {
			struct group *g = getgrnam(tok);

			if (g) {
				ids[(*n)++] = g->gr_gid;
				continue;
			}
		} else {
			struct passwd *p = getpwnam(tok);

			if (p) {
				ids[(*n)++] = p->pw_uid;
				continue;
			}
		}
		log_err("--allow-%s: unknown %s '%s'", what, what, tok);
		rc = -EINVAL;
		break;
	}
	free(copy);
	return rc;
}

int agent_admission_init(struct agent *a)
{
	int rc = 0;

	a->restricted = a->opt.allow_users || a->opt.allow_groups;
	if (a->opt.allow_users)
		rc = parse_list(a->opt.allow_users, "user", false, &a->nallow_uid,
				(uint32_t *)a->allow_uid);
	if (rc == 0 && a->opt.allow_groups)
		rc = parse_list(a->opt.allow_groups, "group", true, &a->nallow_gid,
				(uint32_t *)a->allow_gid);
	return rc;
}

void agent_limits_init(struct agent *a)
{
	const struct ivsock_region *rg = &a->be.rg;
	struct broker_limits *l = &a->limits;

	/* defaults: no uid may hold more than half of anything */
	if (a->opt.max_chans < 0)
		l->max_chans = rg->channel_cap / 2 ? rg->channel_cap / 2 : 1;
	else
		l->max_chans = (uint32_t)a->opt.max_chans;
	if (a->opt.max_listeners < 0)
		l->max_listeners = rg->listener_cap / 2 ? rg->listener_cap / 2 : 1;
	else
		l->max_listeners = (uint32_t)a->opt.max_listeners;
	l->ring_share = a->opt.ring_share < 0 ? 50 : (uint32_t)a->opt.ring_share;
}
