// SPDX-License-Identifier: MIT
/*
 * A fake ivshmem client for ivsockd's tests: connects like QEMU, checks the
 * greeting, the vectors and the peer announcements against the region, can
 * talk to the daemon through its mailbox, and can misbehave on purpose
 * (garbage, hold without reading, vanish mid-greeting, connect cycles).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "ivsock/channel.h"
#include "ivsock/directory.h"
#include "ivsock/doorbell.h"
#include "ivsock/ivshmem_proto.h"
#include "ivsock/msg.h"

static uint8_t nfds_of[65536];      /* eventfds received per peer */
static int vec0[65536];             /* vector-0 eventfd per peer (kept) */
static unsigned int vectors = 4;
static int quiet;
static int in_greeting;   /* initial dump: no event lines */
static volatile sig_atomic_t want_ping;   /* SIGUSR1: mailbox PING now */
static int region_fd = -1;                /* kept with --truncate */
static int keep_region_fd;

static void on_usr1(int sig)
{
	(void)sig;
	want_ping = 1;
}

#define die(...) do { fprintf(stderr, "fake-client: " __VA_ARGS__); fputc('\n', stderr); exit(1); } while (0)

static int connect_to(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (s < 0 || strlen(path) >= sizeof(sa.sun_path))
		die("socket: %s", strerror(errno));
	strcpy(sa.sun_path, path);
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("connect %s: %s", path, strerror(errno));
	return s;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One message with a deadline. @return 0, or -errno from recv. */
static int recv_msg(int s, int64_t *v, int *fd, double timeout)
{
	struct pollfd p = { .fd = s, .events = POLLIN };
	int rc = poll(&p, 1, (int)(timeout * 1000));

	if (rc == 0)
		return -ETIMEDOUT;
	if (rc < 0)
		return -errno;
	return ivsock_ivshmem_recv(s, v, fd);
}

/* Record an announcement; prints connect/disconnect events. */
static void note(int64_t v, int fd, int64_t own)
{
	if (v < 0 || v > 65535)
		die("peer id %lld out of range", (long long)v);
	if (fd < 0) {
		if (!quiet && !in_greeting)
			printf("disconnect %lld\n", (long long)v);
		if (!nfds_of[v])
			die("disconnect of unknown peer %lld", (long long)v);
		nfds_of[v] = 0;
		if (vec0[v] >= 0)
			close(vec0[v]);
		vec0[v] = -1;
		fflush(stdout);
		return;
	}
	if (nfds_of[v] >= vectors)
		die("peer %lld: more than %u eventfds", (long long)v, vectors);
	if (nfds_of[v] == 0) {
		vec0[v] = fd;
		if (v != own && !quiet && !in_greeting)
			printf("connect %lld\n", (long long)v);
	} else {
		close(fd);
	}
	nfds_of[v]++;
	fflush(stdout);
}

struct conn {
	int sock;
	int64_t own;
	struct ivsock_region rg;
	void *base;
	size_t size;
	int vm;
};

static void greet(struct conn *c, const char *path, bool check)
{
	struct ivsock_ivshmem_greeting g;
	struct stat st;
	int64_t v;
	int fd, rc;
	uint32_t dp;

	memset(nfds_of, 0, sizeof(nfds_of));
	c->sock = connect_to(path);
	rc = ivsock_ivshmem_client_greeting(c->sock, &g);
	if (rc < 0)
		die("greeting: %s", strerror(-rc));
	c->own = g.own_id;
	in_greeting = 1;
	while (nfds_of[c->own] < vectors) {
		rc = recv_msg(c->sock, &v, &fd, 5.0);
		if (rc < 0)
			die("initial peers: %s", strerror(-rc));
		if (fd < 0)
			die("initial dump: peer %lld without an eventfd", (long long)v);
		note(v, fd, -1);
	}
	in_greeting = 0;
	if (!check) {
		close(g.shm_fd);
		return;
	}
	if (fstat(g.shm_fd, &st) < 0 || st.st_size <= 0 || (st.st_size & (st.st_size - 1)))
		die("region fd size %lld is not a power of two", (long long)st.st_size);
	c->size = (size_t)st.st_size;
	c->base = mmap(NULL, c->size, PROT_READ | PROT_WRITE, MAP_SHARED, g.shm_fd, 0);
	if (keep_region_fd)
		region_fd = g.shm_fd;
	else
		close(g.shm_fd);
	if (c->base == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	rc = ivsock_region_attach(&c->rg, c->base, c->size);
	if (rc < 0)
		die("attach: %s", ivsock_region_strerror(rc));
	dp = c->rg.sb->daemon_peer_id;
	if (dp > 65535 || nfds_of[dp] != vectors)
		die("daemon peer %u announced with %u eventfds, want %u", dp,
		    dp <= 65535 ? nfds_of[dp] : 0, vectors);
	if (ivsock_load_acquire(&c->rg.sb->daemon_state) != IVSOCK_DAEMON_UP)
		die("daemon_state is not UP");
	c->vm = ivsock_dir_find_peer(&c->rg, (uint32_t)c->own);
	if (c->vm < 0)
		die("no directory entry for our peer id %lld", (long long)c->own);
	for (v = 0; v < 65536; v++)
		if (nfds_of[v] && nfds_of[v] != vectors)
			die("peer %lld announced with %u eventfds, want %u", (long long)v,
			    nfds_of[v], vectors);
}

static void print_greeting(struct conn *c)
{
	struct ivsock_vm_info info;
	int64_t v;

	if (ivsock_dir_read(&c->rg, (uint32_t)c->vm, &info) < 0)
		die("cannot read our directory entry");
	printf("own_id=%lld vm=%d name=%s daemon=%u peers=", (long long)c->own, c->vm,
	       info.name, c->rg.sb->daemon_peer_id);
	for (v = 0; v < 65536; v++)
		if (nfds_of[v] && v != c->own)
			printf("%lld,", (long long)v);
	printf("\n");
	fflush(stdout);
}

/* Send one mailbox request and wait for its answer. @return status. */
static int mailbox(struct conn *c, uint16_t type, const void *payload, uint32_t len)
{
	struct ivsock_mailbox *mb = &c->rg.mailboxes[c->vm];
	uint32_t dp = c->rg.sb->daemon_peer_id;
	struct ivsock_msg_hdr h;
	uint32_t seq = ivsock_load_relaxed(&mb->req_seq) + 1;
	uint8_t resp[IVSOCK_MAILBOX_MSG_MAX];
	double end = now_s() + 10;
	uint32_t rlen;

	ivsock_msg_init(&h, type, len, seq * 7);
	memcpy(mb->req, &h, sizeof(h));
	if (len)
		memcpy(mb->req + sizeof(h), payload, len);
	mb->req_len = (uint32_t)sizeof(h) + len;
	/* Pairs with the daemon's acquire load of req_seq. */
	ivsock_store_release(&mb->req_seq, seq);
	if (vec0[dp] < 0 || ivsock_eventfd_signal(vec0[dp]) < 0)
		die("cannot ring the daemon");
	while (ivsock_load_acquire(&mb->resp_seq) != seq) {
		struct pollfd p = { .fd = vec0[c->own], .events = POLLIN };

		if (now_s() > end)
			die("mailbox: no answer within 10 s");
		poll(&p, 1, 50);
		ivsock_eventfd_drain(vec0[c->own]);
	}
	rlen = mb->resp_len;
	if (rlen > sizeof(resp))
		die("mailbox: resp_len %u", rlen);
	memcpy(resp, mb->resp, rlen);
	if (ivsock_msg_check(resp, rlen, type, 0) < 0)
		die("mailbox: malformed answer");
	memcpy(&h, resp, sizeof(h));
	if (h.seq != seq * 7)
		die("mailbox: answer echoes seq %u, want %u", h.seq, seq * 7);
	return h.status;
}

static int do_register(struct conn *c, const char *spec)
{
	struct ivsock_mb_register r;
	char buf[512], *tok, *save = NULL;

	memset(&r, 0, sizeof(r));
	r.agent_version = 1;
	snprintf(buf, sizeof(buf), "%s", spec);
	tok = strtok_r(buf, ",", &save);
	if (tok && strcmp(tok, "-"))
		snprintf(r.hostname, sizeof(r.hostname), "%s", tok);
	while ((tok = strtok_r(NULL, ",", &save)) && r.naddrs < IVSOCK_VM_MAX_ADDRS) {
		struct ivsock_addr *a = &r.addrs[r.naddrs++];

		if (inet_pton(AF_INET, tok, a->bytes) == 1)
			a->family = IVSOCK_AF_INET;
		else if (inet_pton(AF_INET6, tok, a->bytes) == 1)
			a->family = IVSOCK_AF_INET6;
		else
			die("bad address %s", tok);
	}
	return mailbox(c, IVSOCK_MB_REGISTER, &r, sizeof(r));
}

/* Read announcements for up to secs; stop early at a disconnect of
 * until_gone (if >= 0). @return 0 or 1 if the wait timed out. */
static int events(struct conn *c, double secs, int64_t until_gone)
{
	double end = now_s() + secs;

	while (now_s() < end) {
		int64_t v;
		int fd, rc = recv_msg(c->sock, &v, &fd, end - now_s());

		if (rc == -ETIMEDOUT)
			break;
		if (rc == -EINTR) {
			if (want_ping) {
				want_ping = 0;
				printf("ping status=%d\n", mailbox(c, IVSOCK_MB_PING, NULL, 0));
				fflush(stdout);
			}
			continue;
		}
		if (rc < 0)
			die("events: %s", strerror(-rc));
		note(v, fd, c->own);
		if (fd < 0 && v == until_gone)
			return 0;
	}
	return until_gone >= 0 ? 1 : 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: ivshmem-fake-client [options] SOCKET\n"
		"  -v, --vectors N        vectors the domain hands out (default 4)\n"
		"  -r, --register NAME[,ADDR..]  mailbox REGISTER; prints status=N\n"
		"  -p, --ping             mailbox PING\n"
		"  -s, --stay SECS        then read announcements for SECS\n"
		"  -u, --until-gone PEER  ... and exit 0 as soon as PEER disconnects\n"
		"  -c, --cycles N         connect, check the greeting, close; N times\n"
		"  -g, --garbage N        send N garbage bytes after the greeting\n"
		"  -H, --hold SECS        connect and never read, for SECS\n"
		"  -V, --vanish           connect, read one byte, close\n"
		"  -C, --channel BYTES    open a channel (offered, 10.0.0.1:1000 ->\n"
		"                         10.0.0.2:80) and count BYTES sent on its end\n"
		"  -q, --quiet            no event lines\n"
		"  -N, --raw-name HEX     write these bytes as our directory entry's name\n"
		"  -F, --forge VM         write UNREGISTER into directory entry VM's\n"
		"                         mailbox, ring the daemon, report whether it obeyed\n"
		"  -T, --truncate         ftruncate() the region fd, print the errno\n"
		"  -M, --many-channels N  open up to N channels (prints channels=K)\n"
		"  SIGUSR1 while staying: mailbox PING, prints ping status=N\n"
		"  Arguments after SOCKET are ignored (to look like a QEMU command line).\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "vectors", required_argument, NULL, 'v' },
		{ "register", required_argument, NULL, 'r' },
		{ "ping", no_argument, NULL, 'p' },
		{ "stay", required_argument, NULL, 's' },
		{ "until-gone", required_argument, NULL, 'u' },
		{ "cycles", required_argument, NULL, 'c' },
		{ "garbage", required_argument, NULL, 'g' },
		{ "hold", required_argument, NULL, 'H' },
		{ "vanish", no_argument, NULL, 'V' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "channel", required_argument, NULL, 'C' },
		{ "raw-name", required_argument, NULL, 'N' },
		{ "forge", required_argument, NULL, 'F' },
		{ "truncate", no_argument, NULL, 'T' },
		{ "many-channels", required_argument, NULL, 'M' },
		{ NULL, 0, NULL, 0 },
	};
	const char *reg = NULL;
	double stay = 0, hold = -1;
	long cycles = 0, garbage = 0, i, many = 0;
	int64_t until = -1;
	int ping = 0, vanish = 0, o, rc = 0;
	long chan_bytes = -1;
	const char *raw_name = NULL;
	int forge = -1, trunc_it = 0;
	struct conn c;

	memset(vec0, 0xff, sizeof(vec0));
	while ((o = getopt_long(argc, argv, "+v:r:ps:u:c:g:H:VqC:N:F:TM:", opts, NULL)) != -1) {
		switch (o) {
		case 'v': vectors = (unsigned int)atoi(optarg); break;
		case 'r': reg = optarg; break;
		case 'p': ping = 1; break;
		case 's': stay = atof(optarg); break;
		case 'u': until = atoll(optarg); break;
		case 'c': cycles = atol(optarg); break;
		case 'g': garbage = atol(optarg); break;
		case 'H': hold = atof(optarg); break;
		case 'V': vanish = 1; break;
		case 'q': quiet = 1; break;
		case 'C': chan_bytes = atol(optarg); break;
		case 'N': raw_name = optarg; break;
		case 'F': forge = atoi(optarg); break;
		case 'T': trunc_it = 1; keep_region_fd = 1; break;
		case 'M': many = atol(optarg); break;
		default: usage();
		}
	}
	if (optind + 1 > argc || vectors < 1 || vectors > 64)
		usage();
	{
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_usr1;   /* no SA_RESTART: poll() sees EINTR */
		sigaction(SIGUSR1, &sa, NULL);
	}
	memset(&c, 0, sizeof(c));

	if (hold >= 0) {
		int s = connect_to(argv[optind]);

		printf("holding\n");
		fflush(stdout);
		usleep((useconds_t)(hold * 1e6));
		close(s);
		return 0;
	}
	if (vanish) {
		int s = connect_to(argv[optind]);
		char b;

		if (read(s, &b, 1) != 1)
			die("vanish: no greeting byte");
		close(s);
		return 0;
	}
	if (cycles) {
		quiet = 1;
		for (i = 0; i < cycles; i++) {
			int64_t v;

			greet(&c, argv[optind], false);
			for (v = 0; v < 65536; v++)
				if (vec0[v] >= 0) {
					close(vec0[v]);
					vec0[v] = -1;
				}
			close(c.sock);
		}
		printf("cycles=%ld\n", cycles);
		return 0;
	}

	greet(&c, argv[optind], true);
	print_greeting(&c);
	if (garbage) {
		char junk[4096];

		memset(junk, 0xa5, sizeof(junk));
		while (garbage > 0) {
			ssize_t n = send(c.sock, junk, garbage > 4096 ? 4096 : (size_t)garbage,
					 MSG_NOSIGNAL);

			if (n <= 0)
				break;    /* the daemon may drop us: that is fine */
			garbage -= n;
		}
		printf("garbage sent\n");
	}
	if (reg) {
		rc = do_register(&c, reg);
		printf("register status=%d\n", rc);
	}
	if (ping)
		printf("ping status=%d\n", mailbox(&c, IVSOCK_MB_PING, NULL, 0));
	if (raw_name) {
		struct ivsock_vm_entry *e = &c.rg.vms[c.vm];
		size_t k, n = strlen(raw_name) / 2;

		/* A hostile member writes what it likes into its own entry. */
		if (n >= IVSOCK_NAME_MAX)
			n = IVSOCK_NAME_MAX - 1;
		for (k = 0; k < n; k++) {
			unsigned int b;

			sscanf(raw_name + 2 * k, "%2x", &b);
			e->name[k] = (char)b;
		}
		e->name[n] = '\0';
		printf("raw name written\n");
	}
	if (forge >= 0) {
		/* Write an UNREGISTER into another VM's mailbox, as that VM's
		 * agent would, and ring the daemon (through our own doorbell:
		 * the only one we have). */
		struct ivsock_mailbox *mb;
		struct ivsock_msg_hdr h;
		uint32_t dp = c.rg.sb->daemon_peer_id, seq, k;

		if ((uint32_t)forge >= c.rg.vm_cap)
			die("forge: no entry %d", forge);
		mb = &c.rg.mailboxes[forge];
		seq = ivsock_load_relaxed(&mb->req_seq) + 1;
		ivsock_msg_init(&h, IVSOCK_MB_UNREGISTER, 0, seq);
		memcpy(mb->req, &h, sizeof(h));
		mb->req_len = sizeof(h);
		ivsock_store_release(&mb->req_seq, seq);
		if (vec0[dp] < 0 || ivsock_eventfd_signal(vec0[dp]) < 0)
			die("cannot ring the daemon");
		/* Our own PING after it: once answered, the daemon has seen
		 * the ring that came with the forgery. */
		printf("ping status=%d\n", mailbox(&c, IVSOCK_MB_PING, NULL, 0));
		for (k = 0; k < 20 && ivsock_load_acquire(&mb->resp_seq) != seq; k++)
			usleep(10000);
		printf("forge %s\n", ivsock_load_acquire(&mb->resp_seq) == seq ?
		       "obeyed" : "ignored");
	}
	if (trunc_it) {
		int r = ftruncate(region_fd, 4096);

		printf("truncate rc=%d errno=%s\n", r, r < 0 ? strerror(errno) : "0");
		r = ftruncate(region_fd, (off_t)c.size * 2);
		printf("grow rc=%d errno=%s\n", r, r < 0 ? strerror(errno) : "0");
		r = fcntl(region_fd, F_GET_SEALS);
		printf("seals=0x%x\n", r);
	}
	for (i = 0; i < many; i++) {
		/* Channels until the table or our ring quota is full. */
		struct ivsock_end_id me = { .vm = (uint8_t)c.vm, .client = 1,
					    .peer_id = (uint32_t)c.own, .vector = 0 };
		struct ivsock_tuple t;
		uint32_t idx, gen;

		memset(&t, 0, sizeof(t));
		t.src.family = t.dst.family = IVSOCK_AF_INET;
		memcpy(t.src.bytes, (uint8_t[]){ 10, 0, 0, 1 }, 4);
		memcpy(t.dst.bytes, (uint8_t[]){ 10, 0, 0, 2 }, 4);
		t.sport = (uint16_t)(2000 + i);
		t.dport = 80;
		if (ivsock_chan_open(&c.rg, &me, &t, ivsock_chan_dst_vm(&c.rg, me.vm, &t), c.rg.default_class, &idx, &gen) < 0)
			break;
	}
	if (many)
		printf("channels %ld\n", i);
	if (chan_bytes >= 0) {
		struct ivsock_end_id me = { .vm = (uint8_t)c.vm, .client = 1,
					    .peer_id = (uint32_t)c.own, .vector = 0 };
		struct ivsock_tuple t;
		struct ivsock_chan_view view;
		uint32_t idx, gen;

		memset(&t, 0, sizeof(t));
		t.src.family = t.dst.family = IVSOCK_AF_INET;
		memcpy(t.src.bytes, (uint8_t[]){ 10, 0, 0, 1 }, 4);
		memcpy(t.dst.bytes, (uint8_t[]){ 10, 0, 0, 2 }, 4);
		t.sport = 1000;
		t.dport = 80;
		rc = ivsock_chan_open(&c.rg, &me, &t, ivsock_chan_dst_vm(&c.rg, me.vm, &t), c.rg.default_class, &idx, &gen);
		if (rc < 0 || ivsock_chan_view_connector(&c.rg, idx, gen, &view) < 0)
			die("channel open: %s", strerror(-rc));
		ivsock_chan_count(&c.rg, &view, (uint64_t)chan_bytes, 0);
		printf("channel %u\n", idx);
	}
	fflush(stdout);
	if (stay > 0 || until >= 0)
		if (events(&c, stay > 0 ? stay : 30, until) != 0)
			die("peer %lld did not disconnect in time", (long long)until);
	fflush(stdout);
	close(c.sock);
	return 0;
}
