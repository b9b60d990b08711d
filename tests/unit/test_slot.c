// SPDX-License-Identifier: MIT
/*
 * Unit tests of generation-checked slots (protocol/src/slot.c): claim, move,
 * release, generations, stale references, and a claim race between threads.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <pthread.h>

#include "ivsock/slot.h"
#include "testutil.h"

static void test_pack(void **state)
{
	struct ivsock_slot_val v = { .gen = 0xdeadbeef, .state = 7, .vm = 200, .client = 0xabcd };
	struct ivsock_slot_val u = ivsock_slot_unpack(ivsock_slot_pack(v));

	(void)state;
	assert_int_equal(u.gen, v.gen);
	assert_int_equal(u.state, 7);
	assert_int_equal(u.vm, 200);
	assert_int_equal(u.client, 0xabcd);
	assert_true(ivsock_slot_pack(v) == 0xabcdc807deadbeefULL);
}

static void test_claim_move_release(void **state)
{
	ivsock_a64 w = 0;
	struct ivsock_slot_val v;
	uint32_t g;

	(void)state;
	g = ivsock_slot_claim(&w, 3, 42);
	assert_int_equal(g, 1);
	v = ivsock_slot_get(&w);
	assert_int_equal(v.state, IVSOCK_SLOT_INIT);
	assert_true(ivsock_slot_owned_by(v, 3, 42));
	assert_false(ivsock_slot_owned_by(v, 3, 41));
	assert_false(ivsock_slot_owned_by(v, 2, 42));
	/* a claimed slot cannot be claimed again */
	assert_int_equal(ivsock_slot_claim(&w, 1, 1), 0);
	/* moves check generation and source state */
	assert_int_equal(ivsock_slot_move(&w, g + 1, IVSOCK_SLOT_INIT, 2), -ESTALE);
	assert_int_equal(ivsock_slot_move(&w, g, 2, 3), -ESTALE);
	assert_int_equal(ivsock_slot_move(&w, g, IVSOCK_SLOT_INIT, 2), 0);
	assert_int_equal(ivsock_slot_get(&w).state, 2);
	assert_true(ivsock_slot_owned_by(ivsock_slot_get(&w), 3, 42));
	/* release by a stale generation fails, by the right one succeeds once */
	assert_int_equal(ivsock_slot_release(&w, g + 7), -ESTALE);
	assert_int_equal(ivsock_slot_release(&w, g), 0);
	assert_int_equal(ivsock_slot_release(&w, g), -ESTALE);
	v = ivsock_slot_get(&w);
	assert_int_equal(v.state, IVSOCK_SLOT_FREE);
	assert_false(ivsock_slot_owned_by(v, 3, 42));
	/* the generation survives the free and moves on at the next claim */
	assert_int_equal(v.gen, 1);
	assert_int_equal(ivsock_slot_claim(&w, 0, 0), 2);
	/* a reference to generation 1 is stale now */
	assert_int_equal(ivsock_slot_move(&w, 1, IVSOCK_SLOT_INIT, 2), -ESTALE);
	assert_int_equal(ivsock_slot_release(&w, 1), -ESTALE);
	assert_int_equal(ivsock_slot_release(&w, 2), 0);
}

static void test_gen_wrap_skips_zero(void **state)
{
	struct ivsock_slot_val v = { .gen = UINT32_MAX };
	ivsock_a64 w = ivsock_slot_pack(v);

	(void)state;
	assert_int_equal(ivsock_slot_claim(&w, 0, 0), 1);
}

static void test_release_from_any_state(void **state)
{
	ivsock_a64 w = 0;
	uint32_t g = ivsock_slot_claim(&w, 1, 1);

	(void)state;
	assert_int_equal(ivsock_slot_move(&w, g, IVSOCK_SLOT_INIT, 9), 0);
	assert_int_equal(ivsock_slot_release(&w, g), 0);
	g = ivsock_slot_claim(&w, 1, 1);
	assert_int_equal(ivsock_slot_release(&w, g), 0); /* straight from INIT */
}

/* Threads hammer one slot: a claim is exclusive until its release. */
struct race {
	ivsock_a64 w;
	_Atomic int holders;
	_Atomic int violations;
	_Atomic long claims;
};

static void *racer(void *arg)
{
	struct race *r = arg;
	int i;

	for (i = 0; i < 200000; i++) {
		uint32_t g = ivsock_slot_claim(&r->w, 1, 1);

		if (!g)
			continue;
		if (atomic_fetch_add(&r->holders, 1) != 0)
			atomic_fetch_add(&r->violations, 1);
		atomic_fetch_add(&r->claims, 1);
		atomic_fetch_sub(&r->holders, 1);
		if (ivsock_slot_release(&r->w, g) != 0)
			atomic_fetch_add(&r->violations, 1);
	}
	return NULL;
}

static void test_claim_race(void **state)
{
	struct race r = { 0 };
	pthread_t t[3];
	int i;

	(void)state;
	for (i = 0; i < 3; i++)
		assert_int_equal(pthread_create(&t[i], NULL, racer, &r), 0);
	for (i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(atomic_load(&r.violations), 0);
	assert_true(atomic_load(&r.claims) > 0);
	/* one generation per successful claim */
	assert_int_equal(ivsock_slot_get(&r.w).gen, (uint32_t)atomic_load(&r.claims));
	assert_int_equal(ivsock_slot_get(&r.w).state, IVSOCK_SLOT_FREE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pack),
		cmocka_unit_test(test_claim_move_release),
		cmocka_unit_test(test_gen_wrap_skips_zero),
		cmocka_unit_test(test_release_from_any_state),
		cmocka_unit_test(test_claim_race),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
