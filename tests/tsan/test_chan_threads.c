// SPDX-License-Identifier: MIT
/*
 * Channel table races under ThreadSanitizer (`make check-tsan`): for many
 * rounds, a connector closes (or is released by its agent) while an acceptor
 * accepts and closes, and while a scanner counts channels; every shared
 * field is read with explicit atomics, so TSan must report nothing, and the
 * "who frees" rule must free every channel and ring exactly once, whichever
 * side goes last. Runs without TSan too (as a plain unit test).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <pthread.h>

#include "ivsock/channel.h"
#include "ivsock/directory.h"
#include "../unit/testutil.h"

#define ROUNDS 3000

static const struct ivsock_end_id C0 = { .vm = 0, .client = 1, .peer_id = 10, .vector = 1 };
static const struct ivsock_end_id A1 = { .vm = 1, .client = 5, .peer_id = 11, .vector = 3 };

struct race {
	struct ivsock_region *rg;
	uint32_t idx, gen;
	struct ivsock_chan_view c;
	int mode;        /* 0: connector closes; 1: connector's agent releases it */
	pthread_barrier_t go;
	int acc_rc, freed_a, freed_c;
};

static void *acceptor(void *arg)
{
	struct race *r = arg;
	struct ivsock_chan_view v;

	pthread_barrier_wait(&r->go);
	r->acc_rc = ivsock_chan_accept(r->rg, r->idx, r->gen, 0, &A1, &v);
	if (r->acc_rc == 0)
		r->freed_a = ivsock_chan_close_view(r->rg, &v, false) == 1;
	return NULL;
}

static void *connector(void *arg)
{
	struct race *r = arg;

	pthread_barrier_wait(&r->go);
	if (r->mode == 0)
		r->freed_c = ivsock_chan_close_view(r->rg, &r->c, false) == 1;
	else
		ivsock_chan_release_owner(r->rg, 0, 1, NULL, NULL);
	return NULL;
}

static void *scanner(void *arg)
{
	struct race *r = arg;

	pthread_barrier_wait(&r->go);
	(void)ivsock_chan_count_vm(r->rg, 0);
	(void)ivsock_chan_state(r->rg, r->idx, r->gen);
	return NULL;
}

static void test_close_races_accept(void **state)
{
	struct test_region t;
	struct ivsock_region_params p;
	struct ivsock_tuple tp = {
		.src = { .family = IVSOCK_AF_INET, .bytes = { 10, 0, 0, 1 } },
		.dst = { .family = IVSOCK_AF_INET, .bytes = { 10, 0, 0, 2 } },
		.sport = 1, .dport = 80,
	};
	int i, accepted = 0;

	(void)state;
	test_params_small(&p);
	assert_int_equal(test_region_map(&t, 1U << 20, &p), 0);
	for (i = 0; i < ROUNDS; i++) {
		struct race r = { .rg = &t.rg, .mode = i % 2 };
		pthread_t th[3];
		uint32_t k;

		assert_int_equal(ivsock_chan_open(&t.rg, &C0, &tp, ivsock_chan_dst_vm(&t.rg, C0.vm, &tp), t.rg.default_class, &r.idx, &r.gen), 0);
		assert_int_equal(ivsock_chan_view_connector(&t.rg, r.idx, r.gen, &r.c), 0);
		pthread_barrier_init(&r.go, NULL, 3);
		pthread_create(&th[0], NULL, acceptor, &r);
		pthread_create(&th[1], NULL, connector, &r);
		pthread_create(&th[2], NULL, scanner, &r);
		for (k = 0; k < 3; k++)
			pthread_join(th[k], NULL);
		pthread_barrier_destroy(&r.go);
		accepted += r.acc_rc == 0;
		assert_true(r.acc_rc == 0 || r.acc_rc == -ESTALE);
		assert_false(r.freed_a && r.freed_c);
		for (k = 0; k < t.rg.channel_cap; k++)
			assert_int_equal(ivsock_slot_get(&t.rg.channels[k].slot).state,
					 IVSOCK_SLOT_FREE);
		assert_int_equal(ivsock_block_pool_used(&t.rg, 0), 0);
	}
	print_message("%d of %d rounds accepted before the close\n", accepted, ROUNDS);
	test_region_unmap(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_close_races_accept),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
