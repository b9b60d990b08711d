// SPDX-License-Identifier: MIT
/*
 * ivsockd: command line, configuration (load and SIGHUP reload), the epoll
 * loop with its 100 ms tick (heartbeat, mailbox scan, reclaim), systemd
 * notification and clean shutdown on SIGTERM.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <systemd/sd-daemon.h>

#include "fdstore.h"
#include "ivsockd.h"
#include "log.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ivsockd [--config FILE] [--foreground] [--log-level LEVEL]\n"
		"       ivsockd --domain NAME=SOCKPATH[,size=64M,vectors=4,ring=128K,\n"
		"               max_vms=16,max_connections=16384,max_listeners=1024,\n"
		"               grace=10s,backing=memfd|hugetlb,allow=a+b,\n"
		"               users=root+libvirt-qemu,groups=G,register_timeout=30s] ...\n"
		"               [--control PATH] [--foreground]\n"
		"Serves QEMU's ivshmem-doorbell protocol, one socket per trust domain.\n"
		"See ivsockd(8) and ivsockd.conf(5).\n");
}

static int start_domain(struct daemon *dm, const struct dom_conf *dc)
{
	struct domain *d = calloc(1, sizeof(*d));
	char err[512] = "";
	int rc;

	if (!d)
		return -ENOMEM;
	d->conf = *dc;
	rc = domain_start(d, err, sizeof(err));
	if (rc < 0) {
		log_err("domain %s: %s", dc->name, err);
		free(d);
		return rc;
	}
	d->next = dm->domains;
	dm->domains = d;
	return 0;
}

static void tick_event(struct evsrc *src, uint32_t events)
{
	uint64_t exp, now = now_ms();
	struct domain *d;

	(void)events;
	if (read(src->fd, &exp, sizeof(exp)) < 0)
		return;
	for (d = g_daemon->domains; d; d = d->next) {
		/* Readers only compare successive values: relaxed suffices,
		 * release keeps it ordered after our other writes anyway. */
		ivsock_store_release(&d->rg.sb->daemon_heartbeat,
				     ivsock_load_relaxed(&d->rg.sb->daemon_heartbeat) + 1);
		domain_tick(d, now);
		lifecycle_tick(d, now);
		policy_tick(d, now);
	}
	control_tick(g_daemon, now);
}

static void sig_event(struct evsrc *src, uint32_t events)
{
	struct signalfd_siginfo si;

	(void)events;
	while (read(src->fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGHUP)
			g_daemon->reload = true;
		else
			g_daemon->stop = true;
	}
}

static bool same_geometry(const struct dom_conf *a, const struct dom_conf *b, const char **what)
{
	if (strcmp(a->socket, b->socket))
		*what = "socket";
	else if (strcmp(a->backing, b->backing))
		*what = "backing";
	else if (a->region_size != b->region_size)
		*what = "region_size";
	else if (a->vectors != b->vectors)
		*what = "vectors";
	else if (a->ring_size != b->ring_size || a->ring_size_set != b->ring_size_set)
		*what = "ring_size";
	else if (a->nclasses != b->nclasses ||
		 memcmp(a->class_size, b->class_size, sizeof(a->class_size)) ||
		 memcmp(a->class_share, b->class_share, sizeof(a->class_share)))
		*what = "ring_classes";
	else if (a->max_vms != b->max_vms)
		*what = "max_vms";
	else if (a->max_connections != b->max_connections)
		*what = "max_connections";
	else if (a->max_listeners != b->max_listeners)
		*what = "max_listeners";
	else
		return true;
	return false;
}

static void reload(struct daemon *dm)
{
	struct daemon_conf *nc;
	char err[512] = "";
	unsigned int i;
	struct domain *d;

	sd_notify(0, "RELOADING=1");
	if (!dm->conf_path[0]) {
		log_notice("SIGHUP: no configuration file (quick mode), nothing to reload");
		goto out;
	}
	nc = malloc(sizeof(*nc));
	if (!nc)
		goto out;
	conf_defaults(nc);
	if (conf_load(nc, dm->conf_path, err, sizeof(err)) < 0 ||
	    conf_validate(nc, err, sizeof(err)) < 0) {
		log_err("SIGHUP: %s; keeping the running configuration", err);
		free(nc);
		goto out;
	}
	log_set_level(nc->log_level);
	dm->conf.log_level = nc->log_level;
	if (strcmp(nc->control, dm->conf.control))
		log_warn("SIGHUP: a new control socket path needs a restart; keeping %s",
			 dm->conf.control);
	for (i = 0; i < nc->ndomains; i++) {
		const struct dom_conf *dc = &nc->domains[i];
		const char *what = NULL;

		d = domain_find(dc->name);
		if (!d) {
			if (start_domain(dm, dc) == 0)
				log_notice("SIGHUP: domain %s added", dc->name);
			continue;
		}
		if (!same_geometry(&d->conf, dc, &what))
			log_warn("SIGHUP: domain %s: changing %s needs a new region (re-format); "
				 "refused, the running value stays until restart", dc->name, what);
		memcpy(d->conf.allow, dc->allow, sizeof(dc->allow));
		d->conf.nallow = dc->nallow;
		d->conf.any_user = dc->any_user;
		d->conf.nusers = dc->nusers;
		d->conf.ngroups = dc->ngroups;
		memcpy(d->conf.users, dc->users, sizeof(dc->users));
		memcpy(d->conf.groups, dc->groups, sizeof(dc->groups));
		d->conf.register_ms = dc->register_ms;
		d->conf.grace_ms = dc->grace_ms;
		d->conf.shared_addrs = dc->shared_addrs;
		d->conf.shrink_idle_ms = dc->shrink_idle_ms;
		d->conf.reclaim_idle_ms = dc->reclaim_idle_ms;
		d->conf.reclaim_free_pct = dc->reclaim_free_pct;
	}
	for (d = dm->domains; d; d = d->next)
		if (!conf_find_domain(nc, d->conf.name))
			log_warn("SIGHUP: domain %s is no longer configured; it keeps "
				 "running until restart", d->conf.name);
	free(nc);
	log_notice("configuration reloaded from %s", dm->conf_path);
out:
	sd_notify(0, "READY=1");
}

/* Disconnect every client marked doomed (announcements may doom more). */
static void reap(struct daemon *dm)
{
	bool again = true;

	while (again) {
		struct domain *d;

		again = false;
		for (d = dm->domains; d; d = d->next) {
			struct client *c;

			for (c = d->clients; c; c = c->next) {
				if (c->doomed) {
					lifecycle_disconnect(c, c->why ? c->why : "dropped");
					again = true;
					break;
				}
			}
		}
	}
}

static int setup_loop(struct daemon *dm)
{
	struct itimerspec its = { { 0, 0 }, { 0, 0 } };
	sigset_t ss;

	dm->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (dm->epfd < 0)
		return -errno;
	sigemptyset(&ss);
	sigaddset(&ss, SIGTERM);
	sigaddset(&ss, SIGINT);
	sigaddset(&ss, SIGHUP);
	sigprocmask(SIG_BLOCK, &ss, NULL);
	signal(SIGPIPE, SIG_IGN);
	dm->sig_ev.fd = signalfd(-1, &ss, SFD_NONBLOCK | SFD_CLOEXEC);
	dm->sig_ev.fn = sig_event;
	dm->tick_ev.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	dm->tick_ev.fn = tick_event;
	if (dm->sig_ev.fd < 0 || dm->tick_ev.fd < 0)
		return -errno;
	its.it_interval.tv_sec = dm->conf.heartbeat_ms / 1000;
	its.it_interval.tv_nsec = (long)(dm->conf.heartbeat_ms % 1000) * 1000000L;
	its.it_value = its.it_interval;
	if (timerfd_settime(dm->tick_ev.fd, 0, &its, NULL) < 0)
		return -errno;
	if (ev_add(&dm->sig_ev, EPOLLIN) < 0 || ev_add(&dm->tick_ev, EPOLLIN) < 0)
		return -errno;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "domain", required_argument, NULL, 'd' },
		{ "control", required_argument, NULL, 's' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct daemon dm;
	const char *config = NULL, *control = NULL;
	char err[512] = "";
	char *quick[CONF_DOMAINS_MAX];
	unsigned int nquick = 0, i;
	int fg = 0, level = -1, o, rc;
	struct domain *d;

	while ((o = getopt_long(argc, argv, "c:fd:s:l:h", opts, NULL)) != -1) {
		switch (o) {
		case 'c': config = optarg; break;
		case 'f': fg = 1; break;
		case 'd':
			if (nquick == CONF_DOMAINS_MAX) {
				fprintf(stderr, "ivsockd: too many --domain options\n");
				return 2;
			}
			quick[nquick++] = optarg;
			break;
		case 's': control = optarg; break;
		case 'l':
			level = log_level_parse(optarg);
			if (level < 0) {
				fprintf(stderr, "ivsockd: unknown log level '%s'\n", optarg);
				return 2;
			}
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	g_daemon = &dm;
	dm.ctl_ev.fd = -1;
	conf_defaults(&dm.conf);
	if (config || !nquick) {
		const char *path = config ? config : CONF_DEFAULT_FILE;

		if (conf_load(&dm.conf, path, err, sizeof(err)) < 0) {
			fprintf(stderr, "ivsockd: %s\n", err);
			return 1;
		}
		snprintf(dm.conf_path, sizeof(dm.conf_path), "%s", path);
	}
	for (i = 0; i < nquick; i++) {
		if (conf_add_quick_domain(&dm.conf, quick[i], err, sizeof(err)) < 0) {
			fprintf(stderr, "ivsockd: %s\n", err);
			return 2;
		}
	}
	if (control)
		snprintf(dm.conf.control, sizeof(dm.conf.control), "%s", control);
	if (level >= 0)
		dm.conf.log_level = level;
	if (conf_validate(&dm.conf, err, sizeof(err)) < 0) {
		fprintf(stderr, "ivsockd: %s\n", err);
		return 1;
	}
	if (!dm.conf.ndomains) {
		fprintf(stderr, "ivsockd: no domain configured\n");
		return 1;
	}
	log_open(fg, dm.conf.log_level);
	dm.start_ms = now_ms();
	{
		/* Use what we are allowed; queued descriptors get half of it. */
		struct rlimit rl;

		if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
			if (rl.rlim_cur < rl.rlim_max) {
				rl.rlim_cur = rl.rlim_max;
				setrlimit(RLIMIT_NOFILE, &rl);
				getrlimit(RLIMIT_NOFILE, &rl);
			}
			dm.queued_fds_max = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (1U << 20)
				? (1U << 19) : (uint32_t)(rl.rlim_cur / 2);
		}
		if (dm.queued_fds_max < 16)
			dm.queued_fds_max = 16;
	}
	dm.reserve_fd = -1;
	fd_reserve_init();
	fdstore_init(!getenv("IVSOCKD_NO_FDSTORE"));
	rc = setup_loop(&dm);
	if (rc < 0) {
		log_err("event loop setup: %s", strerror(-rc));
		return 1;
	}
	for (i = 0; i < dm.conf.ndomains; i++) {
		if (start_domain(&dm, &dm.conf.domains[i]) < 0) {
			rc = 1;
			goto out;
		}
	}
	fdstore_done();
	if (control_start(&dm, err, sizeof(err)) < 0) {
		log_err("control socket: %s", err);
		rc = 1;
		goto out;
	}
	sd_notifyf(0, "READY=1\nSTATUS=serving %u domain%s", dm.conf.ndomains,
		   dm.conf.ndomains == 1 ? "" : "s");
	log_notice("ready: %u domain%s, control socket %s", dm.conf.ndomains,
		   dm.conf.ndomains == 1 ? "" : "s", dm.conf.control);

	while (!dm.stop) {
		struct epoll_event ev[64];
		int n = epoll_wait(dm.epfd, ev, 64, -1), k;

		if (n < 0 && errno != EINTR) {
			log_err("epoll_wait: %s", strerror(errno));
			rc = 1;
			break;
		}
		for (k = 0; k < n; k++) {
			struct evsrc *src = ev[k].data.ptr;

			src->fn(src, ev[k].events);
		}
		reap(&dm);
		if (dm.reload) {
			dm.reload = false;
			reload(&dm);
		}
	}
	rc = rc ? rc : 0;
	dm.exiting = true;
	sd_notify(0, "STOPPING=1");
	log_notice("shutting down");
out:
	dm.exiting = true;
	control_stop(&dm);
	while ((d = dm.domains)) {
		dm.domains = d->next;
		domain_stop(d);
		free(d);
	}
	close(dm.tick_ev.fd);
	close(dm.sig_ev.fd);
	close(dm.epfd);
	return rc;
}
