// SPDX-License-Identifier: MIT
/*
 * Fuzzes ivsockd's control socket (hostd/control.c): the fuzz bytes are the
 * request stream an ivsockctl client writes; the daemon's own accept and
 * event handlers run from a private epoll loop until the daemon closes the
 * connection. A few bytes may first corrupt the channel table (written by
 * VMs), which the CHANNELS answer reads. Every reply must be a framed,
 * parseable JSON document.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "ivsock/channel.h"
#include "ivsock/directory.h"
#include "../../hostd/ctl_proto.h"
#include "../../hostd/ivsockd.h"
#include "../../hostd/log.h"
#include "fuzz.h"

#define REGION_SIZE 65536U

static struct daemon dm;
static struct domain dom;
static struct vmslot slots[2];
static struct client cl;
static uint8_t *region;

static void teardown(void)
{
	control_stop(&dm);
}

static void setup(void)
{
	char err[256];

	log_set_level(LOG_EMERG);
	g_daemon = &dm;
	conf_defaults(&dm.conf);
	snprintf(dm.conf.control, sizeof(dm.conf.control), "/tmp/ivsock-fuzz-ctl-%d.sock",
		 (int)getpid());
	dm.epfd = epoll_create1(EPOLL_CLOEXEC);
	FUZZ_ASSERT(dm.epfd >= 0);
	dm.ctl_ev.fd = -1;
	FUZZ_ASSERT(control_start(&dm, err, sizeof(err)) == 0);
	atexit(teardown);

	region = aligned_alloc(4096, REGION_SIZE);
	FUZZ_ASSERT(region);
	dom_conf_defaults(&dom.conf, "fuzz");
	dom.slots = slots;
	dom.clients = &cl;
	dom.nclients = 1;
	dm.domains = &dom;
	cl.dom = &dom;
	cl.peer_id = 10;
	cl.pid = 1;
}

static void reset_region(void)
{
	struct ivsock_region_params pr;
	struct ivsock_end_id me = { .vm = 0, .client = 1, .peer_id = 10, .vector = 1 };
	struct ivsock_tuple t;
	uint32_t idx, gen;

	ivsock_region_params_single(&pr, 4096);
	pr.vm_cap = 2;
	pr.listener_cap = 4;
	pr.offer_cap = 4;
	pr.channel_cap = 4;
	FUZZ_ASSERT(ivsock_region_format(&dom.rg, region, REGION_SIZE, &pr) == 0);
	FUZZ_ASSERT(ivsock_dir_add(&dom.rg, 10, 1, "web", NULL) == 0);
	slots[0].state = VMSLOT_LIVE;
	slots[0].c = &cl;
	cl.vm = 0;
	memset(&t, 0, sizeof(t));
	t.src.family = t.dst.family = IVSOCK_AF_INET;
	t.src.bytes[0] = t.dst.bytes[0] = 10;
	t.dst.bytes[3] = 2;
	t.sport = 40000;
	t.dport = 80;
	FUZZ_ASSERT(ivsock_chan_open(&dom.rg, &me, &t, ivsock_chan_dst_vm(&dom.rg, me.vm, &t), dom.rg.default_class, &idx, &gen) == 0);
}

/* One round of the daemon's loop, without blocking. @return events handled. */
static int loop_once(void)
{
	struct epoll_event ev[8];
	int n = epoll_wait(dm.epfd, ev, 8, 0), i;

	for (i = 0; i < n; i++) {
		struct evsrc *src = ev[i].data.ptr;

		src->fn(src, ev[i].events);
	}
	return n < 0 ? 0 : n;
}

/* Check a reply stream: framed replies, each payload valid JSON. */
static void check_replies(const uint8_t *p, size_t n)
{
	while (n) {
		struct ivsock_msg_hdr h;
		json_error_t jerr;
		json_t *j;

		FUZZ_ASSERT(n >= sizeof(h));
		memcpy(&h, p, sizeof(h));
		FUZZ_ASSERT(ivsock_ctl_hdr_check(&h, IVSOCK_CTL_REPLY_MAX) == 0);
		FUZZ_ASSERT(n - sizeof(h) >= h.len);
		FUZZ_ASSERT(h.status <= 0);
		if (h.len) {
			j = json_loadb((const char *)p + sizeof(h), h.len, 0, &jerr);
			FUZZ_ASSERT(j);
			json_decref(j);
		}
		p += sizeof(h) + h.len;
		n -= sizeof(h) + h.len;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	static uint8_t *out;
	static size_t outcap;
	size_t outlen = 0, sent = 0;
	int npatch, s, idle = 0, rounds = 0;
	bool eof = false;

	if (!region)
		setup();
	reset_region();
	/* VM-written channel table bytes the CHANNELS reply reads. */
	for (npatch = fuzz_u8(&in) % 4; npatch > 0; npatch--) {
		size_t tbl = (size_t)dom.rg.channel_cap * sizeof(struct ivsock_channel);
		size_t off = fuzz_u16(&in) % tbl, len = 1 + fuzz_u8(&in) % 16, got;
		const uint8_t *p = fuzz_bytes(&in, len, &got);

		if (off + got > tbl)
			got = tbl - off;
		memcpy((uint8_t *)dom.rg.channels + off, p, got);
	}

	strcpy(sa.sun_path, dm.conf.control);
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	FUZZ_ASSERT(s >= 0);
	FUZZ_ASSERT(connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	while (!eof) {
		int progress = loop_once();

		if (sent < in.n) {
			ssize_t n = send(s, in.p + sent, in.n - sent, MSG_NOSIGNAL);

			if (n > 0) {
				sent += (size_t)n;
				progress++;
			}
			if (sent == in.n)
				shutdown(s, SHUT_WR);
		} else if (sent == 0) {
			shutdown(s, SHUT_WR);
			sent = 1; /* nothing to send */
		}
		for (;;) {
			ssize_t n;

			if (outcap - outlen < 65536) {
				outcap = outcap ? outcap * 2 : 1 << 20;
				out = realloc(out, outcap);
				FUZZ_ASSERT(out);
			}
			n = recv(s, out + outlen, outcap - outlen, 0);
			if (n == 0) {
				eof = true;
				break;
			}
			if (n < 0)
				break;
			outlen += (size_t)n;
			progress++;
		}
		idle = progress ? 0 : idle + 1;
		/* The daemon answers or closes; it never leaves a client hanging. */
		FUZZ_ASSERT(idle < 1000 && ++rounds < 100000);
	}
	close(s);
	check_replies(out, outlen);
	return 0;
}
