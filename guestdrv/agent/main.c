// SPDX-License-Identifier: MIT
/* ivsock-agent: options, start-up, and the epoll loop that drives the
 * backend, the shim clients, registration and the liveness watches. */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>

#include "ivsock/agent_client.h"
#include "ivsock/barrier.h"
#include "ivsock/directory.h"
#include "addrs.h"
#include "agent.h"
#include "log.h"
#include "util.h"

#define AGENT_VERSION       1
#define TICK_MS             100  /* heartbeat, mailbox poll */
#define MB_TIMEOUT_MS       2000 /* no answer: ask again */
#define RESCAN_MS           1000 /* directory rescan without a doorbell */

static void usage(FILE *f)
{
	fprintf(f,
"usage: ivsock-agent [options]\n"
"       ivsock-agent --status [--listen PATH]\n"
"Serve ivsock's shared-memory transport to the processes of this VM (or of\n"
"this network namespace, with the server backend).\n"
"\n"
"  -b, --backend pci|server  how to reach the region (default: pci, or server\n"
"                            when --server is given)\n"
"  -s, --server PATH         ivsockd's domain socket (server backend)\n"
"  -d, --device PATH         guest device (pci backend; default /dev/ivsock0)\n"
"  -l, --listen PATH|@NAME   where shims connect (default: abstract\n"
"                            \"@" IVSOCK_AGENT_SOCK_ABSTRACT "\", one per network namespace)\n"
"      --allow-user LIST     admit only these users (names or uids, comma-\n"
"                            separated; root and the agent's user always);\n"
"                            default: every local user\n"
"  -g, --allow-group LIST    admit only members of these groups (same rules;\n"
"                            --group is the old name)\n"
"      --max-channels-per-uid N   connections one non-root uid may hold\n"
"                            (default: half the channel table; 0: no cap)\n"
"      --max-listeners-per-uid N  listeners one non-root uid may register\n"
"                            (default: half the registry; 0: no cap)\n"
"      --ring-share-per-uid PCT   share of each ring size class one non-root\n"
"                            uid may hold (default 50; 100: no cap)\n"
"      --spin-us N           after a request, poll this long without sleeping\n"
"                            (default 0: always sleep; see ivsock-agent(8))\n"
"      --accept-hold-us N    wait up to this long for an accepted connection's\n"
"                            offer while the connector's agent is posting it\n"
"                            (default 50000; 0: never)\n"
"      --max-clients-per-uid N  connections one non-root uid may hold (default:\n"
"                            1/8 of the fd limit, 8..1024; 0: no cap)\n"
"  -H, --hostname NAME       name to register (default: gethostname())\n"
"  -f, --foreground          log to stderr instead of syslog\n"
"  -v, --verbose             debug logging\n"
"      --status              print the running agent's status as JSON\n"
"  -h, --help                this text\n");
}

static int epoll_add(struct agent *a, int fd, struct agent_ev *ev, int kind)
{
	struct epoll_event e = { .events = EPOLLIN, .data.ptr = ev };

	ev->kind = kind;
	return epoll_ctl(a->epfd, EPOLL_CTL_ADD, fd, &e) < 0 ? -errno : 0;
}

static void collect_addrs(struct agent *a)
{
	struct ivsock_mb_register nr = a->reg;
	int n = agent_addrs_collect(&nr);

	if (n < 0) {
		log_warn("getifaddrs: %s", strerror(-n));
		return;
	}
	if (nr.naddrs != a->reg.naddrs ||
	    memcmp(nr.addrs, a->reg.addrs, sizeof(nr.addrs)) != 0) {
		char buf[64];

		a->reg = nr;
		a->want_register = true;
		for (uint32_t i = 0; i < nr.naddrs; i++)
			log_info("address %s", ivsock_addr_str(&nr.addrs[i], buf, sizeof(buf)));
		if (nr.naddrs == 0)
			log_info("no addresses to register yet");
	}
}

static void ring_daemon(struct agent *a)
{
	uint32_t d = a->be.rg.sb->daemon_peer_id; /* fixed at format time */

	if (d <= 65535)
		agent_backend_ring(&a->be, d, 0);
}

/* The 100 ms tick: heartbeat, mailbox answer, (re)registration, watches. */
static void tick(struct agent *a)
{
	uint64_t now = agent_now_ms();
	int32_t status;
	int rc;

	agent_mb_heartbeat(&a->mb);
	agent_listen_tick(a, now);

	/* Our identity in the region must still hold: a re-format (another
	 * format_id) or a directory entry that is no longer ours means every
	 * mapping we handed out is stale. Exit non-zero and let the service
	 * manager start us afresh (Restart=on-failure). */
	if (__atomic_load_n(&a->be.rg.sb->format_id, __ATOMIC_RELAXED) != a->be.rg.format_id) {
		log_err("the region was re-formatted under us: exiting to re-attach");
		a->running = false;
		a->failed = true;
		return;
	}
	if (!ivsock_dir_alive(&a->be.rg, a->be.vm_index, a->be.vm_gen)) {
		log_err("our directory entry %u (gen %u) is gone: exiting to re-attach",
			a->be.vm_index, a->be.vm_gen);
		a->running = false;
		a->failed = true;
		return;
	}

	rc = agent_mb_poll(&a->mb, &status);
	if (rc < 0) {
		log_warn("malformed mailbox answer from ivsockd");
	} else if (rc == 1) {
		a->reg_status = status;
		a->reg_answer_ms = now;
		a->warned_no_answer = false;
		if (status == 0) {
			if (!a->registered)
				log_info("registered %u addresses with ivsockd", a->reg.naddrs);
			a->registered = true;
		} else {
			log_warn("ivsockd refused our registration: %s", strerror(-status));
			a->registered = false;
		}
	} else if (a->mb.pending && now - a->mb.sent_ms >= MB_TIMEOUT_MS) {
		if (!a->warned_no_answer)
			log_warn("ivsockd did not answer our registration within %d ms; "
				 "asking again", MB_TIMEOUT_MS);
		a->warned_no_answer = true;
		agent_mb_abandon(&a->mb);
		a->want_register = true;
	}

	switch (agent_mb_watch_daemon(&a->mb, now)) {
	case AGENT_DAEMON_WENT_SILENT:
		log_warn("ivsockd's heartbeat stopped for %d ms: it may be dead; "
			 "existing channels keep working", AGENT_DAEMON_SILENT_MS);
		break;
	case AGENT_DAEMON_CAME_BACK:
		log_info("ivsockd's heartbeat moves again");
		a->want_register = true;
		break;
	case AGENT_DAEMON_RESTARTED:
		log_info("ivsockd restarted (epoch %u): registering again", a->mb.epoch);
		a->want_register = true;
		break;
	}

	if (a->want_register && !a->mb.pending) {
		rc = agent_mb_send(&a->mb, IVSOCK_MB_REGISTER, &a->reg, sizeof(a->reg), now);
		if (rc == 0) {
			a->want_register = false;
			ring_daemon(a);
		}
	}
	if (now - a->last_rescan_ms >= RESCAN_MS) {
		a->last_rescan_ms = now;
		a->be.ops->rescan(&a->be);
	}
}

/* The region mapping can vanish under us (device unplugged or unbound: the
 * driver zaps it, and POLLHUP may not have been read yet). Any SIGBUS here
 * means that: say so and exit 1 without touching anything else. */
static void on_sigbus(int sig)
{
	static const char msg[] =
		"ivsock-agent: the ivshmem device is gone (SIGBUS on the region): exiting\n";

	(void)sig;
	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0) {
		/* nothing more we can do */
	}
	_exit(1);
}

/* As many fds as we may have, one kept in reserve for accept-and-close at
 * EMFILE, and the per-uid cap derived from the limit. */
static void limits(struct agent *a)
{
	struct rlimit rl;
	unsigned long nofile = 1024;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		if (rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
			getrlimit(RLIMIT_NOFILE, &rl);
		}
		if (rl.rlim_cur != RLIM_INFINITY)
			nofile = (unsigned long)rl.rlim_cur;
		else
			nofile = 1UL << 20;
	}
	if (a->opt.max_per_uid >= 0) {
		a->max_per_uid = (unsigned long)a->opt.max_per_uid;
	} else {
		a->max_per_uid = nofile / 8;
		if (a->max_per_uid < 8)
			a->max_per_uid = 8;
		if (a->max_per_uid > 1024)
			a->max_per_uid = 1024;
	}
	a->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static int setup(struct agent *a)
{
	struct itimerspec its = {
		.it_interval = { 0, TICK_MS * 1000000L },
		.it_value = { 0, TICK_MS * 1000000L },
	};
	const char *spec;
	sigset_t ss;
	int rc;

	if (strcmp(a->opt.backend, "server") == 0) {
		a->be.ops = &agent_backend_server_ops;
		spec = a->opt.server;
		if (!spec) {
			log_err("the server backend needs --server PATH");
			return -EINVAL;
		}
	} else if (strcmp(a->opt.backend, "pci") == 0) {
		a->be.ops = &agent_backend_pci_ops;
		spec = a->opt.device;
	} else {
		log_err("unknown backend '%s' (pci or server)", a->opt.backend);
		return -EINVAL;
	}
	rc = a->be.ops->open(&a->be, spec);
	if (rc < 0)
		return rc;
	agent_ids_init(&a->ids, a->be.vectors);
	agent_mb_init(&a->mb, &a->be.rg, a->be.vm_index, agent_now_ms());

	if (a->opt.hostname)
		snprintf(a->reg.hostname, sizeof(a->reg.hostname), "%s", a->opt.hostname);
	else if (gethostname(a->reg.hostname, sizeof(a->reg.hostname) - 1) < 0)
		strcpy(a->reg.hostname, "unknown");
	a->reg.hostname[sizeof(a->reg.hostname) - 1] = '\0';
	a->reg.agent_version = AGENT_VERSION;
	a->reg.naddrs = ~0U; /* forces the first collection to count as a change */
	collect_addrs(a);
	if (a->reg.naddrs > IVSOCK_VM_MAX_ADDRS) { /* getifaddrs failed: none yet */
		a->reg.naddrs = 0;
		a->want_register = true;
	}

	a->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (a->epfd < 0)
		return -errno;
	rc = agent_listen_open(a);
	if (rc < 0)
		return rc;
	a->nlfd = agent_addrs_watch_open();
	if (a->nlfd < 0)
		log_warn("no rtnetlink (%s): addresses are re-read every tick of 1 s",
			 strerror(-a->nlfd));
	a->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (a->tfd < 0 || timerfd_settime(a->tfd, 0, &its, NULL) < 0)
		return -errno;
	sigemptyset(&ss);
	sigaddset(&ss, SIGTERM);
	sigaddset(&ss, SIGINT);
	sigprocmask(SIG_BLOCK, &ss, NULL);
	a->sigfd = signalfd(-1, &ss, SFD_NONBLOCK | SFD_CLOEXEC);
	if (a->sigfd < 0)
		return -errno;
	signal(SIGPIPE, SIG_IGN);
	signal(SIGBUS, on_sigbus);

	if ((rc = epoll_add(a, a->lfd, &a->ev_listen, EV_LISTEN)) < 0 ||
	    (rc = epoll_add(a, a->be.db->wait_fd, &a->ev_vec0, EV_VEC0)) < 0 ||
	    (rc = epoll_add(a, a->tfd, &a->ev_timer, EV_TIMER)) < 0 ||
	    (rc = epoll_add(a, a->sigfd, &a->ev_sig, EV_SIGNAL)) < 0)
		return rc;
	if (a->be.ctl_fd >= 0 && (rc = epoll_add(a, a->be.ctl_fd, &a->ev_ctl, EV_CTL)) < 0)
		return rc;
	if (a->nlfd >= 0 && (rc = epoll_add(a, a->nlfd, &a->ev_nl, EV_NETLINK)) < 0)
		return rc;
	return 0;
}

static void run(struct agent *a)
{
	struct epoll_event evs[32];
	uint64_t ticks = 0;

	a->running = true;
	tick(a);
	while (a->running) {
		/* Just after a broker request, look again without sleeping for
		 * a few microseconds: connection set-up comes in bursts (a close
		 * then the next open), and a wake-up costs far more here. */
		bool spin = a->busy_until_ns && agent_now_ns() < a->busy_until_ns;
		/* ACCEPTs that found no offer: look for it again soon */
		uint64_t again_ns = broker_pending_check(a);
		struct timespec again = { .tv_sec = 0, .tv_nsec = (long)again_ns };
		int n = epoll_pwait2(a->epfd, evs, 32, spin ? &(struct timespec){ 0 } :
				     again_ns ? &again : NULL, NULL);

		if (n == 0 && spin) {
			ivsock_cpu_relax();
			continue;
		}
		a->busy_until_ns = 0;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_err("epoll_wait: %s", strerror(errno));
			return;
		}
		for (int i = 0; i < n; i++) {
			struct agent_ev *ev = evs[i].data.ptr;
			uint64_t v;

			switch (ev->kind) {
			case EV_LISTEN:
				agent_accept(a);
				break;
			case EV_CLIENT:
				agent_client_event(a, (struct agent_client *)ev, evs[i].events);
				break;
			case EV_CTL: {
				int fd = a->be.ctl_fd, rc = a->be.ops->handle_ctl(&a->be);

				if (rc == -ECONNRESET || rc == -ENODEV)
					epoll_ctl(a->epfd, EPOLL_CTL_DEL, fd, NULL);
				if (rc == -ENODEV) {
					log_err("the ivshmem device is gone (unplugged?): exiting");
					a->running = false;
					a->failed = true;
					goto out; /* the region must not be touched again */
				}
				break;
			}
			case EV_VEC0:
				/* ivsockd rang us: a mailbox answer or a directory change. */
				ivsock_eventfd_drain(a->be.db->wait_fd);
				a->be.ops->rescan(&a->be);
				tick(a);
				break;
			case EV_NETLINK:
				if (agent_addrs_watch_drain(a->nlfd) != 0)
					collect_addrs(a);
				break;
			case EV_TIMER:
				if (read(a->tfd, &v, sizeof(v)) == (ssize_t)sizeof(v)) {
					ticks++;
					if (a->nlfd < 0 && ticks % 10 == 0)
						collect_addrs(a);
					tick(a);
				}
				break;
			case EV_SIGNAL: {
				struct signalfd_siginfo si;

				if (read(a->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
					log_info("signal %u: stopping", si.ssi_signo);
					a->running = false;
				}
				break;
			}
			}
		}
	}
out:
	return;
}

static void teardown(struct agent *a)
{
	/* Tell ivsockd our addresses no longer take shortcuts; no wait (and
	 * not into a region that is no longer ours). */
	if (a->be.base && !a->failed && !a->mb.pending &&
	    agent_mb_send(&a->mb, IVSOCK_MB_UNREGISTER, NULL, 0, agent_now_ms()) == 0)
		ring_daemon(a);
	agent_clients_close_all(a);
	if (a->lfd >= 0)
		close(a->lfd);
	if (a->reserve_fd >= 0)
		close(a->reserve_fd);
	if (a->be.ops)
		a->be.ops->close(&a->be);
	if (a->nlfd >= 0)
		close(a->nlfd);
	if (a->tfd >= 0)
		close(a->tfd);
	if (a->sigfd >= 0)
		close(a->sigfd);
	if (a->epfd >= 0)
		close(a->epfd);
}

static int print_status(const char *listen)
{
	char *json = NULL;
	int rc = ivsock_agent_status_at(listen, &json);

	if (rc < 0) {
		fprintf(stderr, "ivsock-agent: no answer from the agent at %s: %s\n",
			listen ? listen : "@" IVSOCK_AGENT_SOCK_ABSTRACT, strerror(-rc));
		return 1;
	}
	printf("%s\n", json);
	free(json);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "backend", required_argument, NULL, 'b' },
		{ "server", required_argument, NULL, 's' },
		{ "device", required_argument, NULL, 'd' },
		{ "listen", required_argument, NULL, 'l' },
		{ "group", required_argument, NULL, 'g' },
		{ "allow-group", required_argument, NULL, 'g' },
		{ "allow-user", required_argument, NULL, 'U' },
		{ "max-channels-per-uid", required_argument, NULL, 'C' },
		{ "max-listeners-per-uid", required_argument, NULL, 'L' },
		{ "ring-share-per-uid", required_argument, NULL, 'R' },
		{ "spin-us", required_argument, NULL, 'P' },
		{ "accept-hold-us", required_argument, NULL, 'A' },
		{ "hostname", required_argument, NULL, 'H' },
		{ "max-clients-per-uid", required_argument, NULL, 'M' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "status", no_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	struct agent a;
	bool status = false;
	int c, rc;

	memset(&a, 0, sizeof(a));
	a.lfd = a.nlfd = a.tfd = a.sigfd = a.epfd = a.reserve_fd = -1;
	a.opt.max_per_uid = -1;
	a.opt.max_chans = a.opt.max_listeners = a.opt.ring_share = a.opt.spin_us = -1;
	a.opt.hold_us = -1;
	a.be.ctl_fd = -1;
	a.opt.device = "/dev/ivsock0";
	while ((c = getopt_long(argc, argv, "b:s:d:l:g:H:fvh", opts, NULL)) != -1) {
		switch (c) {
		case 'b': a.opt.backend = optarg; break;
		case 's': a.opt.server = optarg; break;
		case 'd': a.opt.device = optarg; break;
		case 'l': a.opt.listen = optarg; break;
		case 'g': a.opt.allow_groups = optarg; break;
		case 'U': a.opt.allow_users = optarg; break;
		case 'C':
		case 'L':
		case 'P':
		case 'A':
		case 'R': {
			long *dst = c == 'C' ? &a.opt.max_chans : c == 'L' ? &a.opt.max_listeners
				  : c == 'P' ? &a.opt.spin_us : c == 'A' ? &a.opt.hold_us
				  : &a.opt.ring_share;
			char *end;

			errno = 0;
			*dst = strtol(optarg, &end, 10);
			if (errno || end == optarg || *end || *dst < 0 || *dst > 0x7fffffff ||
			    (c == 'R' && (*dst < 1 || *dst > 100))) {
				fprintf(stderr, "ivsock-agent: bad value '%s' for --%s\n", optarg,
					c == 'C' ? "max-channels-per-uid" :
					c == 'L' ? "max-listeners-per-uid" :
					c == 'P' ? "spin-us" : c == 'A' ? "accept-hold-us" :
					"ring-share-per-uid");
				return 2;
			}
			break;
		}
		case 'H': a.opt.hostname = optarg; break;
		case 'M': {
			char *end;

			errno = 0;
			a.opt.max_per_uid = strtol(optarg, &end, 10);
			if (errno || end == optarg || *end || a.opt.max_per_uid < 0) {
				fprintf(stderr, "ivsock-agent: bad --max-clients-per-uid '%s'\n",
					optarg);
				return 2;
			}
			break;
		}
		case 'f': a.opt.foreground = true; break;
		case 'v': a.opt.verbose++; break;
		case 'S': status = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (status)
		return print_status(a.opt.listen);
	if (!a.opt.backend)
		a.opt.backend = a.opt.server ? "server" : "pci";
	agent_log_init(a.opt.foreground, a.opt.verbose);
	a.euid = geteuid();
	if (agent_admission_init(&a) < 0)
		return 1;
	limits(&a);
	rc = setup(&a);
	if (rc == 0)
		agent_limits_init(&a);
	a.spin_ns = (uint64_t)(a.opt.spin_us < 0 ? 0 : a.opt.spin_us) * 1000;
	a.hold_ns = (uint64_t)(a.opt.hold_us < 0 ? 50000 : a.opt.hold_us) * 1000;
	/* A held ACCEPT looks again every 20 us (late.c): without this the
	 * kernel may let that sleep run 50 us late (the default timer slack). */
	prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
	/* test hook (docs/testing.md): answer every OPEN this late, so that
	 * the acceptor's agent sees the offer only after the ACCEPT */
	if (getenv("IVSOCK_AGENT_TEST_OPEN_DELAY_US"))
		a.test_open_delay_ns = strtoull(getenv("IVSOCK_AGENT_TEST_OPEN_DELAY_US"), NULL, 10) * 1000;
	if (rc == 0) {
		log_info("serving on %s%s", a.opt.listen ? "" : "@",
			 a.opt.listen ? a.opt.listen : IVSOCK_AGENT_SOCK_ABSTRACT);
		run(&a);
	}
	teardown(&a);
	return rc == 0 && !a.failed ? 0 : 1;
}
