// SPDX-License-Identifier: MIT
/*
 * The shim's data path (preload/sock_data.c: ivs_recv, ivs_send,
 * ivs_sock_poll, ivs_sock_arm, ivs_sock_event_seq, and ivs_conn_release at
 * the end) on a connected channel whose other end is an honest acceptor
 * driven by the harness, while a scribbler thread rewrites, at the same
 * time, the acceptor's words (its ring indices, flags, sleep words, its end
 * record) and, in "third party" mode, the shim's own published words too.
 * Linked against the shim's own objects (every preload object); the agent is a
 * struct ivs_agent filled in by the harness (no doorbell: ivs_ring_peer is
 * a no-op), the kernel socket one end of a socketpair.
 * Checked: every call returns (watchdog; blocking calls run with 1 ms
 * SO_RCVTIMEO/SO_SNDTIMEO), counts are within what was asked, caller
 * buffers are exact-size heap blocks (ASan), the region is guarded, and
 * with the scribbler held still, readiness and I/O agree: poll() saying
 * POLLIN (POLLOUT) means a non-blocking recv (send) does not answer EAGAIN,
 * or an event loop spins at 100 % CPU.
 * Known open (xfail by default): "poll-spin-own" (ISSUE-8 #11: poll reads
 * the shim's own indices back from shared memory) and "poll-spin-peer" (a
 * peer that sets RESET without EOF: poll reports POLLIN|POLLERR|POLLHUP,
 * recv says EAGAIN).
 */
#include <errno.h>
#include <poll.h>
#include <arpa/inet.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include "sock_int.h"
#include "ivsock/directory.h"

#define FUZZ_XFAIL_DEFAULT ""
#include "scribble.h"

#define REGION_SIZE 65536U

static uint8_t *region;
static struct ivs_agent ag;
static uint8_t src[1024], abuf[1024];

static void add_peer_words(struct scribbler *sc, struct ivsock_region *rg,
			   const struct ivs_sock *s, bool third)
{
	/* the peer's words: the producer half of the ring we read, the
	 * consumer half of the ring we write (in the peer's ctl page) */
	struct ivsock_ring_prod *rx = s->v.rx.p, *tx_own = s->v.tx.p;
	struct ivsock_ring_cons *tx = s->v.tx.c, *rx_own = s->v.rx.c;
	struct ivsock_channel *c = &rg->channels[s->v.idx];
	uint32_t rs = s->v.ring_size;

	scrib_add(sc, &rx->tail, 4, rs);
	scrib_add(sc, &rx->prod_flags, 4, IVSOCK_RING_EOF | IVSOCK_RING_RESET);
	scrib_add(sc, &rx->prod_sleep, 4, 1);
	scrib_add(sc, &rx->cons_sleep_seen, 4, 1);
	scrib_add(sc, &tx->head, 4, rs);
	scrib_add(sc, &tx->cons_flags, 4, IVSOCK_RING_RCLOSED);
	scrib_add(sc, &tx->cons_sleep, 4, 1);
	scrib_add(sc, &tx->prod_sleep_seen, 4, 1);
	scrib_add(sc, &c->end[1].flags, 4, IVSOCK_END_CLOSED | IVSOCK_END_DEAD);
	scrib_add(sc, &c->end[1].peer_id, 4, 65536);
	scrib_add(sc, &c->end[1].vector, 4, 1);
	scrib_add(sc, &s->v.peer_ctl->peer_id, 4, 65536);
	scrib_add(sc, &s->v.peer_ctl->vector, 4, 1);
	if (!third)
		return;
	scrib_add(sc, &rx_own->head, 4, rs);
	scrib_add(sc, &rx_own->cons_flags, 4, IVSOCK_RING_RCLOSED);
	scrib_add(sc, &tx_own->tail, 4, rs);
	scrib_add(sc, &tx_own->prod_flags, 4, IVSOCK_RING_EOF);
	scrib_add(sc, &c->end[0].flags, 4, IVSOCK_END_CLOSED);
	scrib_add(sc, &s->v.my_ctl->holders, 4, 2);
}

static ssize_t do_recv(struct ivs_sock *s, int fd, size_t len, int flags)
{
	uint8_t *a = malloc(len), *b = malloc(len + 1);
	struct iovec iov[2] = { { a, len }, { b, len + 1 } };
	ssize_t n;

	FUZZ_ASSERT(a && b);
	n = WD(ivs_recv(s, fd, iov, (flags & 0x100) ? 2 : 1, flags & ~0x100));
	FUZZ_ASSERT(n == IVS_PASS || n <= (ssize_t)(2 * len + 1));
	free(a);
	free(b);
	return n;
}

static ssize_t do_send(struct ivs_sock *s, int fd, size_t len, int flags)
{
	struct iovec iov[2] = { { src, len }, { src + 3, len / 2 } };
	ssize_t n = WD(ivs_send(s, fd, iov, (flags & 0x100) ? 2 : 1, (flags & ~0x100) | MSG_NOSIGNAL));

	FUZZ_ASSERT(n == IVS_PASS || n <= (ssize_t)(len + len / 2));
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	uint8_t mode = fuzz_u8(&in);
	bool third = mode & 1;
	struct ivsock_region_params pr;
	struct ivsock_region *rg = &ag.conn.region;
	struct ivsock_end_id s_end = { .vm = 1, .client = 2, .peer_id = 11, .vector = 1 };
	struct ivsock_tuple t;
	struct ivsock_chan_view av;
	static struct scribbler sc;
	struct ivs_sock *s;
	uint32_t idx, gen;
	bool aclosed = false;
	int sp[2], ops = 0;

	if (!region) {
		region = fuzz_guarded_alloc(REGION_SIZE);
		ivs_init();
		ivs_cfg.agent = "@ivsock-fuzz-no-agent"; /* ivs_sleep's lookup fails fast */
		ivs_cfg.spin_ns = 2000;
		ag.conn.sock = -1;
		ag.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		ag.rg = rg;
		ag.me = (struct ivsock_end_id){ .vm = 0, .client = 1, .peer_id = 10, .vector = 1 };
	}
	ivsock_region_params_single(&pr, 4096);
	pr.vm_cap = 2;
	pr.listener_cap = 4;
	pr.offer_cap = 4;
	pr.channel_cap = 4;
	FUZZ_ASSERT(ivsock_region_format(rg, region, REGION_SIZE, &pr) == 0);
	memset(region + rg->sb->pool_off, 0, REGION_SIZE - rg->sb->pool_off);
	FUZZ_ASSERT(ivsock_dir_add(rg, 10, 2, "vm0", NULL) == 0);
	FUZZ_ASSERT(ivsock_dir_add(rg, 11, 2, "vm1", NULL) == 1);
	memset(&t, 0, sizeof(t));
	t.src.family = t.dst.family = IVSOCK_AF_INET;
	t.sport = 40000;
	t.dport = 80;
	FUZZ_ASSERT(ivsock_chan_open(rg, &ag.me, &t, ivsock_chan_dst_vm(rg, ag.me.vm, &t), rg->default_class, &idx, &gen) == 0);
	FUZZ_ASSERT(ivsock_chan_accept(rg, idx, gen, 0, &s_end, &av) == 0);
	FUZZ_ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0);

	s = ivs_sock_new(IVS_CONN, &ag);
	FUZZ_ASSERT(s);
	FUZZ_ASSERT(ivsock_chan_view_connector(rg, idx, gen, &s->v) == 0);
	FUZZ_ASSERT(ivsock_chan_learn_peer(rg, &s->v) == 0);
	s->kfd = sp[0];
	s->rcvtimeo_ms = s->sndtimeo_ms = 1;
	atomic_store(&s->nonblock, 1);
	atomic_store(&s->state, IVS_ST_CONNECTED);

	scrib_init(&sc);
	add_peer_words(&sc, rg, s, third);
	scrib_from_input(&sc, &in);
	scrib_start(&sc);

	while (in.n && ops++ < 64) {
		uint8_t op = fuzz_u8(&in);
		size_t len = 1 + fuzz_u16(&in) % 600;
		int fl = ((op & 0x10) ? 0x100 : 0) | ((op & 0x20) ? MSG_PEEK : 0) |
			 ((op & 0x40) ? MSG_WAITALL : 0);
		unsigned ev;
		ssize_t n;

		switch (op % 10) {
		case 9: /* deterministic write of one peer word */
			scrib_hold(&sc);
			scrib_poke(&sc, fuzz_u8(&in), fuzz_u32(&in));
			scrib_release(&sc);
			break;
		case 0:
			atomic_store(&s->nonblock, 1);
			(void)do_recv(s, sp[0], len, fl);
			break;
		case 1: /* blocking, 1 ms receive timeout */
			atomic_store(&s->nonblock, 0);
			(void)do_recv(s, sp[0], len, fl & ~MSG_PEEK);
			atomic_store(&s->nonblock, 1);
			break;
		case 2:
			atomic_store(&s->nonblock, 1);
			(void)do_send(s, sp[0], len, fl & 0x100);
			break;
		case 3:
			atomic_store(&s->nonblock, 0);
			(void)do_send(s, sp[0], len, fl & 0x100);
			atomic_store(&s->nonblock, 1);
			break;
		case 4:
			(void)WD(ivs_sock_poll(s, POLLIN | POLLOUT | POLLRDHUP));
			(void)WD(ivs_sock_arm(s, (op & 0x80) ? POLLOUT : POLLIN | POLLRDHUP));
			(void)WD(ivs_sock_event_seq(s));
			break;
		case 5: /* the honest acceptor answers and reads */
			if (!aclosed) {
				(void)WD(ivsock_ring_write(&av.tx, src, len, false));
				(void)WD(ivsock_ring_read(&av.rx, abuf, sizeof(abuf)));
			}
			break;
		case 6:
			if (!aclosed && (op & 0x80)) {
				(void)WD(ivsock_chan_close(rg, av.idx, av.gen, IVSOCK_SIDE_ACCEPTOR, op & 0x40));
				aclosed = true;
			} else if (!aclosed) {
				WDV(ivsock_ring_close_write(&av.tx, op & 0x40));
			}
			break;
		case 7: /* a process without the shim wrote on the kernel socket */
			(void)!write(sp[1], "x", 1);
			break;
		default: /* readiness and I/O agree while the peer holds still */
			scrib_hold(&sc);
			atomic_store(&s->nonblock, 1);
			ev = WD(ivs_sock_poll(s, POLLIN | POLLOUT));
			if (ev & POLLIN) {
				n = do_recv(s, sp[0], 1, MSG_PEEK);
				FUZZ_CHECK(third ? "poll-spin-own" : "poll-spin-peer", n != -EAGAIN);
			}
			if ((ev & POLLOUT) && (op & 0x80)) {
				n = do_send(s, sp[0], 1, 0);
				FUZZ_CHECK(third ? "poll-spin-own" : "poll-spin-peer", n != -EAGAIN);
			}
			scrib_release(&sc);
			break;
		}
	}
	scrib_stop(&sc);
	WDV(ivs_conn_release(s, sp[0]));
	ivs_sock_put(s);
	if (!aclosed)
		(void)WD(ivsock_chan_close(rg, av.idx, av.gen, IVSOCK_SIDE_ACCEPTOR, false));
	close(sp[0]);
	close(sp[1]);
	return 0;
}
