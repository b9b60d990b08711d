// SPDX-License-Identifier: MIT
/*
 * ivsock-snoop: a hostile local user in a guest. Run as user B while user A
 * streams a known byte pattern through an accelerated connection; it tries
 * every interface it has to read, write or ring anything of A's connection
 * and of the tables, and reports each attempt:
 *   ok: <what> refused (<errno>)    the attack failed, as it must
 *   LEAK: <what>                    it worked: the isolation is broken
 * Exit 0 if every attack failed, 1 if any worked, 2 on a usage/set-up error.
 *
 *   ivsock-snoop --agent @name --port P --pattern HEX --victim PID [--device /dev/ivsock0]
 *
 * The port names A's connection (tuple dport in the channel table); the
 * pattern is 16 bytes A's stream is made of (searched for in every byte this
 * process can map); PID is one of A's processes (its fds and memory).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "ivsock/agent_client.h"
#include "ivsock/channel.h"
#include "ivsock/ivsock_dev.h"

static int leaks, checks;

static void ok(const char *what, int err)
{
	checks++;
	printf("ok: %s refused (%s)\n", what, strerror(err));
}

static void leak(const char *what)
{
	checks++;
	leaks++;
	printf("LEAK: %s\n", what);
}

/* rc < 0 (errno set) is the expected outcome. */
static void expect_fail(const char *what, long rc)
{
	if (rc < 0)
		ok(what, errno);
	else
		leak(what);
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
	       c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Does [p, p + n) contain pat? */
static bool contains(const uint8_t *p, size_t n, const uint8_t *pat, size_t plen)
{
	for (size_t i = 0; i + plen <= n; i++)
		if (p[i] == pat[0] && !memcmp(p + i, pat, plen))
			return true;
	return false;
}

static int find_chan(const struct ivsock_region *rg, unsigned port, uint32_t *gen, int *side)
{
	for (uint32_t i = 0; i < rg->channel_cap; i++) {
		struct ivsock_slot_val v = ivsock_slot_get(&rg->channels[i].slot);

		if (v.state == IVSOCK_CHAN_CONNECTED && rg->channels[i].tuple.dport == port) {
			*gen = v.gen;
			*side = 0;
			return (int)i;
		}
	}
	return -1;
}

static sigjmp_buf fault_jmp;

static void on_fault(int sig)
{
	(void)sig;
	siglongjmp(fault_jmp, 1);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "agent", required_argument, NULL, 'a' },
		{ "port", required_argument, NULL, 'p' },
		{ "pattern", required_argument, NULL, 'x' },
		{ "victim", required_argument, NULL, 'v' },
		{ "device", required_argument, NULL, 'd' },
		{ "control", no_argument, NULL, 'c' },
		{ 0 }
	};
	const char *agent = NULL, *device = "/dev/ivsock0", *hex = NULL;
	struct ivsock_agent_conn c;
	uint8_t pat[64];
	size_t plen = 0;
	unsigned port = 0;
	int victim = 0, o, ci, side, rc, control = 0;
	uint32_t gen;
	char path[96];

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'a': agent = optarg; break;
		case 'p': port = (unsigned)atoi(optarg); break;
		case 'x': hex = optarg; break;
		case 'v': victim = atoi(optarg); break;
		case 'd': device = optarg; break;
		case 'c': control = 1; break;
		default: return 2;
		}
	}
	if (control)
		victim = port = 1;
	if (!port || !hex || strlen(hex) % 2 || strlen(hex) / 2 > sizeof(pat) || !victim) {
		fprintf(stderr, "usage: ivsock-snoop --agent A --port P --pattern HEX --victim PID\n");
		return 2;
	}
	for (size_t i = 0; hex[2 * i]; i++) {
		int h = hexval(hex[2 * i]), l = hexval(hex[2 * i + 1]);

		if (h < 0 || l < 0)
			return 2;
		pat[plen++] = (uint8_t)(h << 4 | l);
	}
	printf("snoop: uid %u\n", (unsigned)getuid());
	if (control) {
		/* the positive control, as root: the pattern is in BAR2, so the
		 * scans below would see it if they could reach it */
		struct ivsock_dev_info di;
		int d = open(device, O_RDWR);
		void *p;

		if (d < 0 || ioctl(d, IVSOCK_IOC_INFO, &di) < 0) {
			perror("control: device");
			return 2;
		}
		p = mmap(NULL, (size_t)di.region_size, PROT_READ, MAP_SHARED, d, 0);
		if (p == MAP_FAILED) {
			perror("control: mmap of BAR2");
			return 2;
		}
		rc = contains(p, (size_t)di.region_size, pat, plen);
		printf("control: the pattern is %sin BAR2\n", rc ? "" : "NOT ");
		return rc ? 0 : 1;
	}

	/* 1. the device node itself */
	expect_fail("open of the device node read-write", open(device, O_RDWR));
	expect_fail("open of the device node read-only", open(device, O_RDONLY));

	/* 2. A's own fds and memory, through /proc */
	for (int fd = 0; fd < 64; fd++) {
		int f;

		snprintf(path, sizeof(path), "/proc/%d/fd/%d", victim, fd);
		f = open(path, O_RDWR);
		if (f >= 0) {
			leak("open of one of the victim's fds through /proc");
			close(f);
			break;
		}
		if (errno == ENOENT)
			continue;
		ok("open of the victim's fds through /proc", errno);
		break;
	}
	snprintf(path, sizeof(path), "/proc/%d/mem", victim);
	expect_fail("open of the victim's /proc/PID/mem", open(path, O_RDONLY));
	{
		char b[16];
		struct iovec l = { b, sizeof(b) }, r = { (void *)0x400000, sizeof(b) };

		expect_fail("process_vm_readv of the victim", process_vm_readv(victim, &l, 1, &r, 1, 0));
	}

	/* 3. what the agent gives anyone: the tables, read-only */
	memset(&c, 0, sizeof(c));
	rc = ivsock_agent_connect(agent, &c);
	if (rc < 0) {
		fprintf(stderr, "snoop: agent: %s\n", strerror(-rc));
		return 2;
	}
	printf("snoop: admitted as client %u (uid %u), tables %llu bytes\n", c.info.client_id,
	       c.info.uid, (unsigned long long)c.info.tables_size);
	if (contains(c.map, c.map_size, pat, plen))
		leak("the victim's bytes are readable in the tables");
	else
		ok("reading the victim's bytes in the tables (not there)", ENOENT);
	ci = find_chan(&c.region, port, &gen, &side);
	if (ci < 0) {
		fprintf(stderr, "snoop: the victim's channel (port %u) is not in the tables\n", port);
		return 2;
	}
	printf("snoop: victim channel %d gen %u\n", ci, gen);

	/* the tables window (pci) or region fd (server) we were handed: the
	 * agent_conn keeps the latter; on pci the fd was closed after mmap,
	 * so ask again through a fresh HELLO for the raw fd */
	if (c.info.backend == IVSOCK_BACKEND_PCI) {
		struct ivsock_msg_hdr h;
		struct ivsock_ag_hello hello = { .pid = (uint32_t)getpid() };
		struct {
			struct ivsock_msg_hdr h;
			struct ivsock_ag_hello_reply r;
		} rep;
		int fds[2] = { -1, -1 }, nfds = 0, s2 = ivsock_agent_dial(agent);
		ssize_t n;

		(void)h;
		n = s2 < 0 ? -1 : ivsock_agent_call(s2, IVSOCK_AG_HELLO, 1, &hello, sizeof(hello),
						    IVSOCK_AG_HELLO_REPLY, &rep, sizeof(rep), fds, 2,
						    &nfds);
		if (n > 0 && nfds == 2) {
			int t = fds[0];
			uint32_t vec = 0;
			struct ivsock_dev_ring rr = { 0 };
			struct ivsock_dev_window w = { 0 };
			void *p;

			expect_fail("mmap PROT_WRITE of the tables window",
				    (long)(intptr_t)(p = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
							      MAP_SHARED, t, 0)) == -1 ? -1 : 0);
			p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, t, 0);
			if (p != MAP_FAILED) {
				expect_fail("mprotect(PROT_WRITE) of a read-only tables mapping",
					    mprotect(p, 4096, PROT_READ | PROT_WRITE));
				munmap(p, 4096);
			}
			expect_fail("mmap of the tables window beyond its end (the ring pool)",
				    (long)(intptr_t)mmap(NULL, 4096, PROT_READ, MAP_SHARED, t,
							 (off_t)rep.r.tables_size) == -1 ? -1 : 0);
			expect_fail("MAP_PRIVATE of the tables window",
				    (long)(intptr_t)mmap(NULL, 4096, PROT_READ | PROT_WRITE,
							 MAP_PRIVATE, t, 0) == -1 ? -1 : 0);
			expect_fail("ringing a peer through the tables window",
				    ioctl(t, IVSOCK_IOC_WIN_RING, &vec));
			expect_fail("IVSOCK_IOC_RING (any peer) on a window fd",
				    ioctl(t, IVSOCK_IOC_RING, &rr));
			w.length = 4096;
			w.ring_peer = IVSOCK_WIN_NO_RING;
			expect_fail("cutting a window from a window fd (IVSOCK_IOC_WINDOW)",
				    ioctl(t, IVSOCK_IOC_WINDOW, &w));
			close(fds[0]);
			close(fds[1]);
		}
		if (s2 >= 0)
			close(s2);
	}

	/* 4. the broker: act on the victim's connection */
	{
		struct ivsock_ag_chan r;
		int wfd = -1, mine = socket(AF_INET, SOCK_STREAM, 0);

		rc = ivsock_agent_attach(&c, -1, (uint32_t)ci, gen, 0, &r, &wfd);
		if (rc < 0)
			ok("ATTACH to the victim's connector end without its socket", -rc);
		else
			leak("ATTACH to the victim's connector end without its socket");
		rc = ivsock_agent_attach(&c, mine, (uint32_t)ci, gen, 1, &r, &wfd);
		if (rc < 0)
			ok("ATTACH to the victim's acceptor end with a socket of ours", -rc);
		else
			leak("ATTACH to the victim's acceptor end with a socket of ours");
		rc = ivsock_agent_abandon(&c, mine, (uint32_t)ci, gen);
		if (rc < 0)
			ok("ABANDON of the victim's connection", -rc);
		else
			leak("ABANDON of the victim's connection");
		/* one way: the proof is that the victim's transfer completes */
		ivsock_agent_close_end(&c, mine, (uint32_t)ci, gen, 0, true);
		ivsock_agent_close_end(&c, -1, (uint32_t)ci, gen, 1, true);
		close(mine);
	}

	/* 5. everything our own mappings reach: the tables, scanned for the
	 *    victim's bytes, and never writable */
	{
		struct sigaction sa = { .sa_handler = on_fault };
		volatile uint8_t *t = c.map;

		sigaction(SIGSEGV, &sa, NULL);
		sigaction(SIGBUS, &sa, NULL);
		if (sigsetjmp(fault_jmp, 1) == 0) {
			t[c.map_size / 2] = t[c.map_size / 2];
			leak("a write to the tables");
		} else {
			ok("a write to the tables", EFAULT);
		}
	}

	printf("snoop: %d attacks, %d worked\n", checks, leaks);
	ivsock_agent_close(&c);
	return leaks ? 1 : 0;
}
