// SPDX-License-Identifier: MIT
/*
 * Writes the seed corpora of the fuzz harnesses (tests/fuzz/corpus/NAME/):
 * a handful of valid inputs each, built from the real structures so they
 * follow layout changes. Run by `make fuzz-corpus`; the output is committed.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <arpa/inet.h>

#include "ivsock/layout.h"
#include "ivsock/msg.h"
#include "../../hostd/ctl_proto.h"

static const char *top;

/* A growable byte buffer for one seed. */
struct seed {
	uint8_t b[65536];
	size_t n;
};

static void put(struct seed *s, const void *p, size_t n)
{
	if (s->n + n > sizeof(s->b)) {
		fprintf(stderr, "mkcorpus: seed too large\n");
		exit(1);
	}
	memcpy(s->b + s->n, p, n);
	s->n += n;
}

static void put8(struct seed *s, uint8_t v) { put(s, &v, 1); }
static void put16(struct seed *s, uint16_t v) { put(s, &v, 2); }
static void put32(struct seed *s, uint32_t v) { put(s, &v, 4); }
static void puts_(struct seed *s, const char *str) { put(s, str, strlen(str)); }

static void msg(struct seed *s, uint16_t type, const void *payload, uint32_t len, uint32_t seq)
{
	struct ivsock_msg_hdr h;

	ivsock_msg_init(&h, type, len, seq);
	put(s, &h, sizeof(h));
	if (len)
		put(s, payload, len);
}

static void save(const char *name, const struct seed *s, const char *fmt, ...)
{
	char dir[512], path[600], leaf[64];
	va_list ap;
	FILE *f;

	va_start(ap, fmt);
	vsnprintf(leaf, sizeof(leaf), fmt, ap);
	va_end(ap);
	snprintf(dir, sizeof(dir), "%s/%s", top, name);
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		perror(dir);
		exit(1);
	}
	snprintf(path, sizeof(path), "%s/%s", dir, leaf);
	f = fopen(path, "wb");
	if (!f || fwrite(s->b, 1, s->n, f) != s->n || fclose(f)) {
		perror(path);
		exit(1);
	}
}

static struct ivsock_addr v4(const char *str)
{
	struct ivsock_addr a;

	memset(&a, 0, sizeof(a));
	a.family = IVSOCK_AF_INET;
	inet_pton(AF_INET, str, a.bytes);
	return a;
}

/* ivshmem: chunk header = (len - 1) | nfds << 5, len <= 32. */
static void ivshmem_msg(struct seed *s, int64_t v, int nfds)
{
	put8(s, (uint8_t)(7 | nfds << 5));
	put(s, &v, 8);
}

static void seeds_ivshmem(void)
{
	struct seed s = { .n = 0 };
	int i;

	put8(&s, 1); /* greeting first */
	ivshmem_msg(&s, 0, 0);
	ivshmem_msg(&s, 3, 0);
	ivshmem_msg(&s, -1, 1);
	for (i = 0; i < 4; i++)
		ivshmem_msg(&s, 1, 1);      /* peer 1, one eventfd per vector */
	for (i = 0; i < 4; i++)
		ivshmem_msg(&s, 3, 1);      /* ourselves */
	ivshmem_msg(&s, 1, 0);          /* peer 1 left */
	save("ivshmem_recv", &s, "greeting");
	s.n = 0;
	put8(&s, 0);
	put8(&s, 3);                    /* split one message: 4 + 4 bytes */
	put32(&s, 5);
	put8(&s, 3);
	put32(&s, 0);
	ivshmem_msg(&s, 5, 1);
	save("ivshmem_recv", &s, "split");
}

static void seeds_msg(void)
{
	struct ivsock_mb_register r;
	struct ivsock_ag_hello hello = { 1234, 0 };
	struct seed s = { .n = 0 };

	memset(&r, 0, sizeof(r));
	r.agent_version = 1;
	r.naddrs = 1;
	r.addrs[0] = v4("10.0.0.1");
	strcpy(r.hostname, "web");
	put8(&s, IVSOCK_MB_REGISTER);
	put16(&s, sizeof(r));
	msg(&s, IVSOCK_MB_REGISTER, &r, sizeof(r), 1);
	save("msg", &s, "register");
	s.n = 0;
	put8(&s, 0);
	put16(&s, 0);
	msg(&s, IVSOCK_MB_PING, NULL, 0, 2);
	save("msg", &s, "ping");
	s.n = 0;
	put8(&s, IVSOCK_AG_HELLO);
	put16(&s, sizeof(hello));
	msg(&s, IVSOCK_AG_HELLO, &hello, sizeof(hello), 3);
	save("msg", &s, "hello");
}

static void seeds_hostd_mailbox(void)
{
	struct ivsock_mb_register r;
	struct seed s = { .n = 0 };
	uint8_t modes[] = { 8, 8 | 2, 8 | 1 };
	size_t i;

	memset(&r, 0, sizeof(r));
	r.agent_version = 1;
	r.naddrs = 3;
	r.addrs[0] = v4("10.0.0.1");
	r.addrs[1] = v4("127.0.0.1");
	r.addrs[2].family = IVSOCK_AF_INET6;
	r.addrs[2].bytes[0] = 0xfd;
	r.addrs[2].bytes[15] = 1;
	strcpy(r.hostname, "db-1");
	for (i = 0; i < sizeof(modes); i++) {
		s.n = 0;
		put8(&s, modes[i]);
		put8(&s, (uint8_t)(i + 1));
		msg(&s, IVSOCK_MB_REGISTER, &r, sizeof(r), 7);
		save("hostd_mailbox", &s, "register-%zu", i);
	}
	r.addrs[0] = v4("10.0.0.2");   /* owned by VM 1 in the harness */
	s.n = 0;
	put8(&s, 8);
	put8(&s, 1);
	msg(&s, IVSOCK_MB_REGISTER, &r, sizeof(r), 8);
	save("hostd_mailbox", &s, "register-taken");
	s.n = 0;
	put8(&s, 8);
	put8(&s, 2);
	msg(&s, IVSOCK_MB_UNREGISTER, NULL, 0, 9);
	save("hostd_mailbox", &s, "unregister");
	s.n = 0;
	put8(&s, 8);
	put8(&s, 3);
	msg(&s, IVSOCK_MB_PING, NULL, 0, 10);
	save("hostd_mailbox", &s, "ping");
}

static void agent_packet(struct seed *s, uint16_t type, const void *p, uint32_t len)
{
	put16(s, (uint16_t)(sizeof(struct ivsock_msg_hdr) + len));
	msg(s, type, p, len, 42);
}

static void seeds_agent(void)
{
	struct ivsock_ag_hello hello = { 1234, 0 };
	struct ivsock_ag_peer peer = { 10, 1 }, bad = { 7, 0 };
	struct seed s = { .n = 0 };
	uint32_t seq;

	put8(&s, 0);
	agent_packet(&s, IVSOCK_AG_HELLO, &hello, sizeof(hello));
	agent_packet(&s, IVSOCK_AG_PEER_FD, &peer, sizeof(peer));
	agent_packet(&s, IVSOCK_AG_PEER_FD, &bad, sizeof(bad));
	agent_packet(&s, IVSOCK_AG_STATUS, NULL, 0);
	agent_packet(&s, IVSOCK_AG_HELLO, &hello, sizeof(hello));
	save("agent_request", &s, "session");
	s.n = 0;
	put8(&s, 0);
	agent_packet(&s, IVSOCK_AG_STATUS, NULL, 0);
	save("agent_request", &s, "status");
	s.n = 0;
	put8(&s, 1);                  /* client not allowed */
	agent_packet(&s, IVSOCK_AG_HELLO, &hello, sizeof(hello));
	save("agent_request", &s, "refused");

	/* Agent replies as the shim reads them (ivsock_agent_call, seq 7). */
	{
		struct ivsock_ag_hello_reply hr;

		memset(&hr, 0, sizeof(hr));
		hr.backend = IVSOCK_BACKEND_SERVER;
		hr.peer_id = 3;
		hr.client_id = 1;
		hr.vector = 1;
		hr.region_size = 1 << 20;
		s.n = 0;
		put8(&s, 2);                          /* max_fds 2 */
		put16(&s, (uint16_t)((sizeof(struct ivsock_msg_hdr) + sizeof(hr)) | 2 << 14));
		msg(&s, IVSOCK_AG_HELLO_REPLY, &hr, sizeof(hr), 7);
		save("agent_reply", &s, "hello-reply");
		s.n = 0;
		put8(&s, 1);
		put16(&s, (uint16_t)(sizeof(struct ivsock_msg_hdr) | 1 << 14));
		msg(&s, IVSOCK_AG_HELLO_REPLY, NULL, 0, 6);  /* stale seq */
		put16(&s, (uint16_t)(sizeof(struct ivsock_msg_hdr) + sizeof(hr)));
		msg(&s, IVSOCK_AG_HELLO_REPLY, &hr, sizeof(hr), 7);
		save("agent_reply", &s, "stale-then-good");
	}

	/* Mailbox answers: the agent's first request has seq 1. */
	for (seq = 0; seq < 2; seq++) {
		struct ivsock_msg_hdr h;

		s.n = 0;
		put8(&s, (uint8_t)seq);      /* bit 0: REGISTER, else PING */
		ivsock_msg_init(&h, seq ? IVSOCK_MB_REGISTER : IVSOCK_MB_PING, 0, 1);
		h.status = seq ? -EADDRINUSE : 0;
		put(&s, &h, sizeof(h));
		save("agent_mbresp", &s, "answer-%u", seq);
	}
}

static void seeds_ring(void)
{
	struct seed s = { .n = 0 };
	int role;

	for (role = 0; role < 2; role++) {
		s.n = 0;
		put8(&s, (uint8_t)(1 | role << 2));    /* 128-byte ring, no pokes */
		put8(&s, 1); put16(&s, 100);           /* write / read 100 */
		put8(&s, 0); put16(&s, 0); put32(&s, 100); put8(&s, 6); /* peer moves 100 */
		put8(&s, 5); put16(&s, 0);             /* readable / writable */
		put8(&s, 3); put16(&s, 40); put16(&s, 10);
		put8(&s, 2); put16(&s, 300);           /* vectored, wraps */
		put8(&s, 4); put16(&s, 20);
		put8(&s, 7); put16(&s, 0);             /* close */
		put8(&s, 9); put16(&s, 0);             /* re-attach */
		save("ring", &s, "role-%d", role);
	}
}

static void seeds_region(void)
{
	struct ivsock_region rg;
	struct seed s = { .n = 0 };
	uint8_t *mem = aligned_alloc(4096, 256 * 1024);

	/* Formatted with parameters, no patches. */
	put8(&s, 0);
	put8(&s, 3); put8(&s, 7); put8(&s, 15); put8(&s, 3); put8(&s, 2);
	save("region", &s, "formatted");
	/* One patch: vm_cap moved. */
	put8(&s, (uint8_t)offsetof(struct ivsock_superblock, vm_cap));
	put8(&s, 3); /* 4 bytes */
	put32(&s, 5);
	save("region", &s, "patched");
	/* A raw superblock, as ivsock_region_format writes it (defaults but
	 * small tables so they fit 256 KiB). */
	if (mem) {
		struct ivsock_region_params p;

		ivsock_region_params_single(&p, 4096);
		p.vm_cap = 2;
		p.listener_cap = 8;
		p.offer_cap = 8;
		p.channel_cap = 8;
		if (ivsock_region_format(&rg, mem, 256 * 1024, &p) == 0) {
			/* format_id is random: fix it so the seed is reproducible */
			rg.sb->format_id = 0x1122334455667788ULL;
			s.n = 0;
			put8(&s, 1);
			put(&s, mem, sizeof(struct ivsock_superblock));
			save("region", &s, "raw");
		}
		free(mem);
	}
}

static void seeds_tables(void)
{
	struct seed s = { .n = 0 };

	save("tables", &s, "untouched");
	/* Directory entry 0's naddrs (offset 4096 + naddrs) set huge. */
	put16(&s, (uint16_t)offsetof(struct ivsock_vm_entry, naddrs));
	put8(&s, 3);
	put32(&s, 1000);
	save("tables", &s, "naddrs");
}

static void seeds_config(void)
{
	static const char *quick[] = {
		"a=/tmp/a.sock\nb=/tmp/b.sock,size=64M,vectors=2,ring=64K,max_vms=4,"
		"grace=2s,backing=memfd,allow=web+db",
		"x=/tmp/x.sock,size=1G",
	};
	struct seed s = { .n = 0 };
	FILE *f = fopen("hostd/ivsockd.conf", "r");
	size_t n, i;

	put8(&s, 0);
	if (f) {
		n = fread(s.b + 1, 1, sizeof(s.b) - 1, f);
		s.n += n;
		fclose(f);
	}
	save("config", &s, "sample");
	s.n = 0;
	put8(&s, 0);
	puts_(&s, "[daemon]\nlog_level = debug\n[domain a]\nsocket=/tmp/a.sock\n"
		  "region_size=1M\nring_size=4K\nallow = web db-1\nshared_addresses = yes\n"
		  "[domain b]\nsocket=/tmp/b.sock\n");
	save("config", &s, "two-domains");
	for (i = 0; i < 2; i++) {
		s.n = 0;
		put8(&s, 1);
		puts_(&s, quick[i]);
		save("config", &s, "quick-%zu", i);
	}
	s.n = 0;
	put8(&s, 2);
	puts_(&s, "128KiB");
	save("config", &s, "size");
}

static void seeds_identify(void)
{
	static const char qemu[] =
		"/usr/bin/qemu-system-x86_64\0-name\0guest=web,debug-threads=on\0"
		"-uuid\0" "c0ffee00-1234-5678-9abc-def012345678\0-accel\0tcg";
	static const char plain[] = "qemu-system-x86_64\0-name\0db-1";
	struct seed s = { .n = 0 };

	put(&s, qemu, sizeof(qemu));
	save("identify", &s, "qemu");
	s.n = 0;
	put(&s, plain, sizeof(plain));
	save("identify", &s, "plain");
	s.n = 0;
	puts_(&s, "ivsock-agent\0--backend\0server");
	save("identify", &s, "agent");
}

static void seeds_control(void)
{
	struct seed s = { .n = 0 };

	put8(&s, 0);   /* no channel-table patches */
	msg(&s, IVSOCK_CTL_DOMAIN_LIST, NULL, 0, 1);
	msg(&s, IVSOCK_CTL_VM_LIST, NULL, 0, 2);
	msg(&s, IVSOCK_CTL_VM_SHOW, "web", 3, 3);
	msg(&s, IVSOCK_CTL_VM_SHOW, "nope", 4, 4);
	msg(&s, IVSOCK_CTL_CHANNELS, NULL, 0, 5);
	msg(&s, 0x1ff, NULL, 0, 6);
	save("control", &s, "all-requests");
	s.n = 0;
	put8(&s, 1);   /* one patch: channel 0's ring index */
	put16(&s, (uint16_t)offsetof(struct ivsock_channel, ring_c2s));
	put8(&s, 3);
	put32(&s, 0xffffffffU);
	msg(&s, IVSOCK_CTL_CHANNELS, NULL, 0, 1);
	save("control", &s, "channels-patched");
}

static void seeds_ctl_reply(void)
{
	static const char *docs[] = {
		"{\"domains\":[{\"name\":\"default\",\"socket\":\"/run/ivsock/default.sock\","
		"\"backing\":\"memfd\",\"region_size\":268435456,\"vectors\":4,\"max_vms\":16,"
		"\"ring_size\":131072,\"rings_per_vm\":100,\"daemon_peer_id\":0,\"clients\":1}]}",
		"{\"vms\":[{\"domain\":\"default\",\"name\":\"web\",\"uuid\":\"-\",\"state\":\"alive\","
		"\"peer_id\":3,\"vectors\":4,\"addresses\":[\"10.0.0.1\",\"fd00::1\"]}]}",
		"{\"vm\":{\"domain\":\"default\",\"name\":\"web\",\"peer_id\":3,\"qemu\":false,"
		"\"addresses\":[\"10.0.0.1\"],\"daemon_state\":\"alive\"}}",
		"{\"channels\":[{\"domain\":\"default\",\"index\":0,\"gen\":1,\"state\":\"connected\","
		"\"ends\":[{\"vm\":\"web\",\"peer_id\":3,\"vector\":1,\"tx_bytes\":10,\"rx_bytes\":5},"
		"{\"vm\":\"db\",\"peer_id\":4,\"vector\":2,\"tx_bytes\":5,\"rx_bytes\":10}]}]}",
	};
	static const uint16_t types[] = {
		IVSOCK_CTL_DOMAIN_LIST, IVSOCK_CTL_VM_LIST, IVSOCK_CTL_VM_SHOW, IVSOCK_CTL_CHANNELS,
	};
	struct seed s = { .n = 0 };
	size_t k;

	for (k = 0; k < 4; k++) {
		s.n = 0;
		put8(&s, (uint8_t)(k | 4 | 8));
		msg(&s, types[k], docs[k], (uint32_t)strlen(docs[k]), 0);
		save("ctl_reply", &s, "reply-%zu", k);
	}
	s.n = 0;
	put8(&s, 2 | 4 | 8 | 16);   /* --json */
	msg(&s, IVSOCK_CTL_VM_SHOW, docs[2], (uint32_t)strlen(docs[2]), 0);
	save("ctl_reply", &s, "json");
}

/* ---- broker (fuzz_broker.c): a script of socket ops and requests ---- */

/* The broker harness's request: an op byte with op % 16 >= 6, then client
 * k and request kind t (0 HELLO, 1 LISTEN, 2 UNLISTEN, 3 OPEN, 4 ACCEPT,
 * 5 ABANDON, 6 CLOSE, 7 ATTACH, 10 PEER_FD, 11 STATUS) as k + 3 * t. */
enum { BR_LISTEN = 1, BR_UNLISTEN, BR_OPEN, BR_ACCEPT, BR_ABANDON, BR_CLOSE, BR_ATTACH };
/* socket kinds (arg >> 3) % 9: listen, bound, conn, accepted, unbound,
 * udp, unix, pipe, eventfd */
static void br_mk(struct seed *s, unsigned slot, unsigned kind, int v6)
{
	put8(s, 0);
	put8(s, (uint8_t)(slot | kind << 3 | (v6 ? 0x80 : 0)));
}

/* connect bound slot b to listening slot l, the accepted socket into slot a */
static void br_connect(struct seed *s, unsigned b, unsigned l, unsigned a)
{
	put8(s, (uint8_t)(1 | a << 4));
	put8(s, (uint8_t)(b | l << 3));
}

/* a request: sel, fdsel as fuzz_broker.c's request() reads them; fd_mode
 * 0 none, 1 the socket of `slot`, 2 it and two eventfds, 3 an eventfd */
static void br_req(struct seed *s, unsigned k, unsigned t, uint8_t sel, unsigned slot,
		   unsigned fd_mode)
{
	put8(s, 15);
	put8(s, (uint8_t)(k + 3 * t));
	put8(s, sel);
	put8(s, (uint8_t)(slot | fd_mode << 3 | (fd_mode == 3 ? 0x80 : 0)));
}

static void seeds_broker(void)
{
	struct seed s;

	/* client 0 listens on slot 0, opens from slot 1, client 2 accepts */
#define BR_SESSION(v6)                                          \
	do {                                                    \
		br_mk(&s, 0, 0, v6);                            \
		br_mk(&s, 1, 1, v6);                            \
		br_req(&s, 0, BR_LISTEN, 0, 0, 1);              \
		br_req(&s, 0, BR_OPEN, (v6) ? 4 : 0, 1, 1);     \
		br_connect(&s, 1, 0, 2);                        \
		br_req(&s, 2, BR_ACCEPT, 0, 2, 1);              \
	} while (0)
	s.n = 0;
	put8(&s, 0);
	BR_SESSION(0);
	br_req(&s, 0, BR_CLOSE, 0x00, 0, 0);   /* ref 0: the connector's end */
	br_req(&s, 2, BR_CLOSE, 0x01, 0, 0);   /* ref 1: the acceptor's */
	save("broker", &s, "session");

	s.n = 0;
	put8(&s, 1);                           /* windows are fds (pci-like) */
	BR_SESSION(1);
	save("broker", &s, "session-v6-windows");

	/* the other client of the same uid, and the other uid, act on client
	 * 0's end: without a socket, with a socket of their own, with the
	 * owner's socket (allowed: a forked holder) */
	s.n = 0;
	put8(&s, 0);
	BR_SESSION(0);
	br_mk(&s, 3, 1, 0);
	br_req(&s, 1, BR_CLOSE, 0x00, 0, 0);
	br_req(&s, 2, BR_ABANDON, 0x00, 3, 1);
	br_req(&s, 1, BR_ATTACH, 0x00, 3, 1);
	br_req(&s, 1, BR_ATTACH, 0x00, 1, 1);
	br_req(&s, 2, BR_CLOSE, 0x00, 2, 1);
	br_req(&s, 1, BR_CLOSE, 0x00, 1, 1);
	save("broker", &s, "wrong-owner");

	/* stale generations, the other side, close twice */
	s.n = 0;
	put8(&s, 0);
	BR_SESSION(0);
	br_req(&s, 0, BR_ATTACH, 0x10, 1, 1);
	br_req(&s, 0, BR_CLOSE, 0x20, 0, 0);
	br_req(&s, 0, BR_CLOSE, 0x30, 0, 0);
	br_req(&s, 0, BR_CLOSE, 0x00, 0, 0);
	br_req(&s, 0, BR_CLOSE, 0x00, 0, 0);
	save("broker", &s, "stale-close-twice");

	/* open, abandon, close; to the other VM; to no VM */
	s.n = 0;
	put8(&s, 0);
	br_mk(&s, 0, 0, 0);
	br_mk(&s, 1, 1, 0);
	br_mk(&s, 2, 1, 0);
	br_mk(&s, 3, 1, 0);
	br_req(&s, 0, BR_LISTEN, 0, 0, 1);
	br_req(&s, 0, BR_OPEN, 0, 1, 1);
	br_req(&s, 0, BR_ABANDON, 0, 0, 0);
	br_req(&s, 0, BR_CLOSE, 0, 0, 0);
	br_req(&s, 0, BR_OPEN, 2, 2, 1);       /* VM 1 */
	br_req(&s, 0, BR_OPEN, 3, 3, 1);       /* not a VM */
	br_req(&s, 0, BR_ABANDON, 0, 2, 1);
	save("broker", &s, "open-abandon");

	/* ACCEPT and OPEN with sockets of every wrong kind, extra fds */
	s.n = 0;
	put8(&s, 0);
	BR_SESSION(0);
	for (unsigned kind = 4; kind < 9; kind++) {
		br_mk(&s, 3 + kind % 4, kind, 0);
		br_req(&s, 1, BR_ACCEPT, 0, 3 + kind % 4, 2);
		br_req(&s, 1, BR_OPEN, 0, 3 + kind % 4, 1);
	}
	br_req(&s, 1, BR_ACCEPT, 0, 0, 1);     /* the listening one */
	br_req(&s, 1, BR_ACCEPT, 0, 1, 1);     /* connected elsewhere */
	br_req(&s, 1, BR_OPEN, 0, 0, 1);
	br_req(&s, 1, BR_OPEN, 0, 2, 1);
	save("broker", &s, "wrong-sockets");

	/* a flood of OPENs beyond the per-uid limit */
	s.n = 0;
	put8(&s, 4);
	br_mk(&s, 0, 0, 0);
	br_req(&s, 0, BR_LISTEN, 0, 0, 1);
	for (unsigned i = 0; i < 6; i++) {
		br_mk(&s, 1 + i % 6, 1, 0);
		br_req(&s, i % 2, BR_OPEN, 0, 1 + i % 6, 1);
	}
	br_mk(&s, 7, 1, 0);
	br_req(&s, 2, BR_OPEN, 0, 7, 1);
	save("broker", &s, "flood");

	/* VM 1 accepts our connection to it; our clients try its end, it
	 * closes, we close; and a client that stops reading its replies */
	s.n = 0;
	put8(&s, 32);                          /* ring share 10 % */
	br_mk(&s, 1, 1, 0);
	br_mk(&s, 2, 1, 0);
	br_req(&s, 0, BR_OPEN, 2, 1, 1);       /* ref 0 */
	br_req(&s, 1, BR_OPEN, 2, 2, 1);       /* ref 1 */
	put8(&s, 3);                           /* VM 1 accepts */
	put8(&s, 0);
	br_req(&s, 1, BR_CLOSE, 0x30, 0, 0);   /* VM 1's end of ref 0 */
	br_req(&s, 0, BR_ATTACH, 0x30, 1, 1);
	br_req(&s, 0, BR_CLOSE, 0x00, 0, 0);
	put8(&s, 4);                           /* VM 1 closes its first end */
	put8(&s, 0);
	put8(&s, 5);                           /* client 1 stops reading */
	put8(&s, 1);
	br_mk(&s, 3, 1, 0);
	br_req(&s, 1, BR_OPEN, 2, 3, 1);
	save("broker", &s, "vm1-acceptor");

	/* requests before HELLO */
	s.n = 0;
	put8(&s, 8);
	br_mk(&s, 0, 0, 0);
	br_req(&s, 0, BR_LISTEN, 0, 0, 1);
	br_req(&s, 1, BR_CLOSE, 0, 0, 0);
	br_req(&s, 0, 0, 0, 0, 3);             /* HELLO with a stray fd */
	br_req(&s, 0, BR_LISTEN, 0, 0, 1);
	save("broker", &s, "before-hello");

	/* Known bug (docs/testing.md, [end-count], [uid-limit]): CLOSE of an
	 * end already closed, while the other end is still open, uncharges the
	 * client again (do_close in guestdrv/agent/broker.c): two connections,
	 * the first closed twice, then three more OPENs: uid 1000 holds 4
	 * live ends with --max-channels-per-uid 3. */
	s.n = 0;
	put8(&s, 0);
	br_mk(&s, 0, 0, 0);
	br_req(&s, 0, BR_LISTEN, 0, 0, 1);
	br_mk(&s, 1, 1, 0);
	br_req(&s, 0, BR_OPEN, 0, 1, 1);
	br_connect(&s, 1, 0, 2);
	br_req(&s, 2, BR_ACCEPT, 0, 2, 1);     /* refs 0, 1 */
	br_mk(&s, 3, 1, 0);
	br_req(&s, 0, BR_OPEN, 0, 3, 1);
	br_connect(&s, 3, 0, 4);
	br_req(&s, 2, BR_ACCEPT, 0, 4, 1);     /* refs 2, 3 */
	br_req(&s, 0, BR_CLOSE, 0x00, 0, 0);
	br_req(&s, 0, BR_CLOSE, 0x00, 0, 0);
	br_req(&s, 0, BR_CLOSE, 0x00, 0, 0);
	for (unsigned i = 5; i < 8; i++) {
		br_mk(&s, i, 1, 0);
		br_req(&s, 0, BR_OPEN, 0, i, 1);
	}
	save("broker", &s, "crash-close-twice");
#undef BR_SESSION
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: mkcorpus DIR (run from the top of the tree)\n");
		return 2;
	}
	top = argv[1];
	if (mkdir(top, 0755) < 0 && errno != EEXIST) {
		perror(top);
		return 1;
	}
	seeds_ivshmem();
	seeds_msg();
	seeds_hostd_mailbox();
	seeds_agent();
	seeds_ring();
	seeds_region();
	seeds_tables();
	seeds_config();
	seeds_identify();
	seeds_control();
	seeds_ctl_reply();
	seeds_broker();
	return 0;
}
