// SPDX-License-Identifier: MIT
/*
 * A hostile peer: one process scribbles random values over every shared word
 * a channel's users read (ring indices, flags and sleep words, channel ends,
 * block references, ctl pages, slot words, offers, directory, superblock) while this
 * process keeps using the channel. It must only ever see errors, never crash
 * and never touch memory outside its rings (PROT_NONE canaries around the
 * region, sentinel-filled blocks of other partitions inside it, ASan under check-asan).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <sched.h>
#include <signal.h>
#include <time.h>
#include <sys/wait.h>

#include "ivsock/channel.h"
#include "ivsock/directory.h"
#include "ivsock/listener.h"
#include "ivsock/offer.h"
#include "testutil.h"

#define SENTINEL 0x5a

struct target {
	void *p;
	int wide; /* 8-byte word */
};

struct hostile {
	struct test_region t;
	struct target tg[256];
	int ntg;
	uint32_t idx, gen;
	struct ivsock_tuple tup;
	uint8_t *guard[2];   /* rings of other partitions: never written */
	size_t guard_len;
	long errs[160];      /* count per errno */
	long ok;
};

static void add32(struct hostile *h, void *p)
{
	h->tg[h->ntg++] = (struct target){ p, 0 };
}

static void add64(struct hostile *h, void *p)
{
	h->tg[h->ntg++] = (struct target){ p, 1 };
}

/* Both ctl pages of a block: every ring word and every end word. */
static void add_block(struct hostile *h, uint32_t bidx)
{
	void *mem = ivsock_region_block_mem(&h->t.rg, bidx);
	int side;

	for (side = 0; side < 2; side++) {
		struct ivsock_end_ctl *e = ivsock_block_ctl(mem, h->t.rg.class[0].ring_size, side);

		add32(h, &e->prod.tail);
		add32(h, &e->prod.prod_flags);
		add32(h, &e->prod.prod_sleep);
		add32(h, &e->prod.cons_sleep_seen);
		add32(h, &e->cons.head);
		add32(h, &e->cons.cons_flags);
		add32(h, &e->cons.cons_sleep);
		add32(h, &e->cons.prod_sleep_seen);
		add32(h, &e->peer_id);
		add32(h, &e->vector);
		add32(h, &e->holders);
		add64(h, &e->tx_bytes);
	}
}

static void collect_targets(struct hostile *h)
{
	struct ivsock_region *rg = &h->t.rg;
	struct ivsock_channel *c = &rg->channels[h->idx];
	int s;

	add_block(h, c->block);
	add64(h, &c->slot);
	add32(h, &c->block);
	add32(h, &c->block_gen);
	add32(h, &c->next_block);
	add32(h, &c->next_block_gen);
	add32(h, &c->tuple.sport);
	for (s = 0; s < 2; s++) {
		add32(h, &c->end[s].vm_index);
		add32(h, &c->end[s].peer_id);
		add32(h, &c->end[s].vector);
		add32(h, &c->end[s].client);
		add32(h, &c->end[s].flags);
		add32(h, &c->end[s].uid);
	}
	add64(h, &rg->blockslots[c->block]);
	for (s = 0; s < 4; s++) {
		add64(h, &rg->offers[s].slot);
		add32(h, &rg->offers[s].channel);
		add32(h, &rg->offers[s].tuple.src.bytes[0]);
	}
	add64(h, &rg->vms[0].slot);
	add32(h, &rg->vms[0].addr_seq);
	add32(h, &rg->vms[0].naddrs);
	add32(h, &rg->vms[0].peer_id);
	add64(h, &rg->listeners[0].slot);
	add32(h, &rg->listeners[0].port);
	add32(h, &rg->sb->vm_cap);
	add32(h, &rg->sb->class[0].ring_size);
	add32(h, &rg->sb->nclasses);
	add64(h, &rg->sb->channel_off);
	add64(h, &rg->sb->magic);
}

/* Values a hostile peer would pick: zero, all ones, near the current value,
 * sign flips, small and huge. */
static uint64_t evil(uint64_t *rs, uint64_t cur)
{
	switch (rnd_range(rs, 0, 7)) {
	case 0: return 0;
	case 1: return ~0ULL;
	case 2: return cur + rnd_range(rs, 1, 8192);
	case 3: return cur - rnd_range(rs, 1, 8192);
	case 4: return rnd_range(rs, 0, 16);
	case 5: return cur ^ (1ULL << rnd_range(rs, 0, 63));
	case 6: return cur | 0x80000000ULL;
	default: return splitmix64(rs);
	}
}

static void scribbler(struct hostile *h)
{
	uint64_t rs = (uint64_t)getpid() * 0x9e37ULL;

	for (;;) {
		struct target *x = &h->tg[rnd_range(&rs, 0, (uint64_t)h->ntg - 1)];

		if (x->wide) {
			ivsock_a64 *w = x->p;

			ivsock_store_relaxed(w, evil(&rs, ivsock_load_relaxed(w)));
		} else {
			ivsock_a32 *w = x->p;

			ivsock_store_relaxed(w, (uint32_t)evil(&rs, ivsock_load_relaxed(w)));
		}
		if (rnd_range(&rs, 0, 63) == 0)
			sched_yield();
	}
}

static void note(struct hostile *h, long rc, const char *what)
{
	static const int allowed[] = {
		EPROTO, ESTALE, EPIPE, ECONNRESET, EAGAIN, ENOBUFS, EINVAL, ENOENT,
		ENOSPC, EEXIST, EBADF, EPROTONOSUPPORT, EMSGSIZE,
	};
	size_t i;

	if (rc >= 0) {
		h->ok++;
		return;
	}
	for (i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
		if (-rc == allowed[i]) {
			h->errs[-rc]++;
			return;
		}
	}
	fail_msg("%s: unexpected %ld", what, rc);
}

static void check_len(long rc, size_t len)
{
	if (rc > 0 && (size_t)rc > len)
		fail_msg("returned %ld > %zu requested", rc, len);
}

static void victim_round(struct hostile *h, uint64_t *rs, struct ivsock_chan_view *c,
			 struct ivsock_chan_view *a)
{
	struct ivsock_region *rg = &h->t.rg;
	size_t len = (size_t)rnd_range(rs, 0, 3 * rg->class[0].ring_size);
	uint8_t *buf = malloc(len ? len : 1); /* exact size: ASan sees overruns */
	struct ivsock_ring *r;
	struct iovec v[2] = { { buf, len / 2 }, { buf + len / 2, len - len / 2 } };
	long rc = 0;

	memset(buf, 0xc3, len ? len : 1);
	switch ((c->tx.broken || a->rx.broken) && rnd_range(rs, 0, 3) == 0 ? 13 :
		rnd_range(rs, 0, 21)) {
	case 0: r = rnd_range(rs, 0, 1) ? &c->tx : &a->tx;
		rc = ivsock_ring_write(r, buf, len, rnd_range(rs, 0, 1)); check_len(rc, len); break;
	case 1: r = rnd_range(rs, 0, 1) ? &c->tx : &a->tx;
		rc = ivsock_ring_writev(r, v, 2, false); check_len(rc, len); break;
	case 2: r = rnd_range(rs, 0, 1) ? &c->rx : &a->rx;
		rc = ivsock_ring_read(r, buf, len); check_len(rc, len); break;
	case 3: r = rnd_range(rs, 0, 1) ? &c->rx : &a->rx;
		rc = ivsock_ring_readv(r, v, 2); check_len(rc, len); break;
	case 4: r = rnd_range(rs, 0, 1) ? &c->rx : &a->rx;
		rc = ivsock_ring_peek(r, buf, len, (size_t)rnd_range(rs, 0, rg->class[0].ring_size));
		check_len(rc, len); break;
	case 5: rc = ivsock_ring_consume(&c->rx, len); check_len(rc, len); break;
	case 6: rc = ivsock_ring_readable(&a->rx); check_len(rc, rg->class[0].ring_size); break;
	case 7: rc = ivsock_ring_writable(&c->tx); check_len(rc, rg->class[0].ring_size); break;
	case 8: rc = ivsock_ring_take_back(&c->tx, buf, len); check_len(rc, len); break;
	case 9: rc = ivsock_ring_producer_prepare_sleep(&c->tx);
		(void)ivsock_ring_consumer_needs_wake(&c->tx); break;
	case 10: rc = ivsock_ring_consumer_prepare_sleep(&a->rx);
		(void)ivsock_ring_producer_needs_wake(&a->rx); break;
	case 11: rc = ivsock_ring_unconsumed(&c->tx); check_len(rc, rg->class[0].ring_size); break;
	case 12: rc = ivsock_chan_learn_peer(rg, c); break;
	case 13: {
		/* re-attach both sides from the (scribbled) channel entry */
		struct ivsock_channel *ch = &rg->channels[h->idx];
		uint32_t b = ch->block;
		void *m = ivsock_region_block_mem(rg, b);
		struct ivsock_chan_view nv, av;

		rc = ivsock_chan_view_connector(rg, h->idx, h->gen, &nv);
		if (rc == 0)
			*c = nv;
		/* like the library: only a block of the connector's partition,
		 * attached as a process holding a window onto it would */
		if (m && ivsock_region_block_vm(rg, b) == 0) {
			int arc = ivsock_chan_view_block(&av, m, rg->class[0].ring_size,
							 IVSOCK_SIDE_ACCEPTOR, h->idx, h->gen);

			note(h, arc, "attach");
			if (arc == 0) {
				a->rx = av.rx;
				a->tx = av.tx;
				a->my_ctl = av.my_ctl;
				a->peer_ctl = av.peer_ctl;
			}
		}
		break;
	}
	case 14: {
		struct ivsock_end_id me = { .vm = 1, .client = 2, .peer_id = 2, .vector = 1 };
		struct ivsock_chan_view nv;

		rc = ivsock_chan_accept(rg, h->idx, h->gen, 0, &me, &nv);
		if (rc == 0)
			*a = nv;
		break;
	}
	case 15: {
		uint32_t ch, cg;

		rc = ivsock_offer_take(rg, &h->tup, &ch, &cg, NULL);
		break;
	}
	case 16: {
		struct ivsock_vm_info info;

		rc = ivsock_dir_read(rg, 0, &info);
		if (rc == 0 && (info.naddrs > IVSOCK_VM_MAX_ADDRS ||
				strnlen(info.name, IVSOCK_NAME_MAX) >= IVSOCK_NAME_MAX))
			fail_msg("directory snapshot not validated");
		(void)ivsock_dir_find_addr(rg, &h->tup.dst);
		break;
	}
	case 17: {
		struct ivsock_region nrg;

		rc = ivsock_region_attach(&nrg, h->t.base, h->t.size);
		break;
	}
	case 18: rc = ivsock_listener_find(rg, 0, &h->tup.dst, 80); break;
	case 19: {
		uint32_t ch = ivsock_chan_count_vm(rg, 0);

		(void)ch;
		rc = ivsock_chan_state(rg, h->idx, h->gen);
		break;
	}
	case 20: rc = (long)ivsock_chan_peer_flags(rg, c) & 0; break;
	default:
		ivsock_chan_count(rg, c, len, len);
		break;
	}
	note(h, rc, "victim");
	free(buf);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void test_hostile_peer(void **state)
{
	struct ivsock_region_params p;
	struct ivsock_end_id me0 = { .vm = 0, .client = 1, .peer_id = 1, .vector = 1 };
	struct ivsock_end_id me1 = { .vm = 1, .client = 1, .peer_id = 2, .vector = 1 };
	struct ivsock_addr a4 = { .family = IVSOCK_AF_INET, .bytes = { 10, 0, 0, 2 } };
	struct ivsock_chan_view c, a;
	const char *e = getenv("IVSOCK_HOSTILE_SECONDS");
	double secs = e ? atof(e) : 3.0, end;
	struct hostile *h = calloc(1, sizeof(*h));
	uint64_t rs = 4242;
	uint32_t og, lg, r2, g2;
	long rounds = 0;
	int status;
	size_t i;
	pid_t pid;

	(void)state;
	test_params_small(&p);
	assert_int_equal(test_region_map(&h->t, 1U << 20, &p), 0);
	h->tup.src = (struct ivsock_addr){ .family = IVSOCK_AF_INET, .bytes = { 10, 0, 0, 1 } };
	h->tup.dst = a4;
	h->tup.sport = 1000;
	h->tup.dport = 80;
	assert_int_equal(ivsock_dir_add(&h->t.rg, 1, 1, "victim", NULL), 0);
	/* the destination belongs to the acceptor's VM (1): ivsock_chan_accept
	 * refuses an acceptor of any other VM */
	assert_int_equal(ivsock_dir_add(&h->t.rg, 2, 1, "acceptor", NULL), 1);
	assert_int_equal(ivsock_dir_set_addrs(&h->t.rg, 1, &a4, 1), 0);
	assert_true(ivsock_listener_add(&h->t.rg, 0, 1, &a4, 80, 0, &lg) >= 0);
	assert_int_equal(ivsock_chan_open(&h->t.rg, &me0, &h->tup, ivsock_chan_dst_vm(&h->t.rg, me0.vm, &h->tup), h->t.rg.default_class, &h->idx, &h->gen), 0);
	assert_true(ivsock_offer_post(&h->t.rg, 0, 1, &h->tup, h->idx, h->gen, &og) >= 0);
	assert_int_equal(ivsock_chan_accept(&h->t.rg, h->idx, h->gen, 0, &me1, &a), 0);
	assert_int_equal(ivsock_chan_view_connector(&h->t.rg, h->idx, h->gen, &c), 0);
	/* the hostile side owns partition 0 (it is the connector); blocks of
	 * the acceptor's and a third VM's partitions are sentinel memory that
	 * nothing may write, whatever the references say */
	for (i = 0; i < 2; i++) {
		assert_int_equal(ivsock_block_alloc(&h->t.rg, (uint8_t)(i + 1), 0, 9, &r2, &g2), 0);
		assert_int_equal(ivsock_region_block_vm(&h->t.rg, r2), i + 1);
		h->guard[i] = ivsock_region_block_mem(&h->t.rg, r2);
		h->guard_len = h->t.rg.class[0].block_size;
		memset(h->guard[i], SENTINEL, h->guard_len);
	}
	collect_targets(h);

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		scribbler(h);
		_exit(0);
	}
	end = now() + secs;
	while (now() < end) {
		for (i = 0; i < 256; i++, rounds++)
			victim_round(h, &rs, &c, &a);
	}
	/* the victim can still tear everything down */
	note(h, ivsock_chan_close(&h->t.rg, h->idx, h->gen, 0, true), "close");
	note(h, ivsock_chan_close(&h->t.rg, h->idx, h->gen, 1, true), "close");
	note(h, ivsock_chan_release_vm(&h->t.rg, 0, NULL, NULL), "release_vm");
	note(h, ivsock_offer_release_owner(&h->t.rg, 0, 1), "offer release");
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status)); /* the scribbler was still running */

	for (i = 0; i < 2 * h->guard_len; i++)
		if (h->guard[i / h->guard_len][i % h->guard_len] != SENTINEL)
			fail_msg("sentinel block %zu byte %zu overwritten", i / h->guard_len,
				 i % h->guard_len);
	/* nor were the other partitions' blocks freed through forged refs */
	assert_int_equal(ivsock_block_pool_used(&h->t.rg, 1), 1);
	assert_int_equal(ivsock_block_pool_used(&h->t.rg, 2), 1);
	printf("hostile: %ld rounds, %ld ok, EPROTO %ld, ESTALE %ld, EPIPE %ld, "
	       "ECONNRESET %ld, EAGAIN %ld\n", rounds, h->ok, h->errs[EPROTO],
	       h->errs[ESTALE], h->errs[EPIPE], h->errs[ECONNRESET], h->errs[EAGAIN]);
	test_region_unmap(&h->t);
	free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hostile_peer),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
