// SPDX-License-Identifier: MIT
/*
 * Unit tests of the offer table (protocol/src/offer.c): IPv4 and IPv6
 * tuples, collisions inside the probe window, duplicate tuples, a take race
 * between two threads (exactly one wins), cancel and owner cleanup.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <pthread.h>

#include "ivsock/offer.h"
#include "testutil.h"

static int setup(void **state)
{
	struct test_region *t = calloc(1, sizeof(*t));
	struct ivsock_region_params p;

	test_params_small(&p); /* 64 offers, probe window 32 */
	assert_int_equal(test_region_map(t, 1U << 20, &p), 0);
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	test_region_unmap(*state);
	free(*state);
	return 0;
}

static struct ivsock_tuple tup4(uint16_t sport)
{
	struct ivsock_tuple t = {
		.src = { .family = IVSOCK_AF_INET, .bytes = { 10, 0, 0, 1 } },
		.dst = { .family = IVSOCK_AF_INET, .bytes = { 10, 0, 0, 2 } },
		.sport = sport, .dport = 5000,
	};

	return t;
}

static struct ivsock_tuple tup6(uint16_t sport)
{
	struct ivsock_tuple t = {
		.src = { .family = IVSOCK_AF_INET6, .bytes = { 0xfd, [15] = 1 } },
		.dst = { .family = IVSOCK_AF_INET6, .bytes = { 0xfd, [15] = 2 } },
		.sport = sport, .dport = 5000,
	};

	return t;
}

static void test_post_take_v4_v6(void **state)
{
	struct test_region *t = *state;
	struct ivsock_tuple a = tup4(40000), b = tup6(40000), c = tup4(40001);
	uint32_t g, chan, cg;
	uint8_t vm;

	assert_true(ivsock_offer_post(&t->rg, 1, 3, &a, 7, 70, &g) >= 0);
	assert_true(ivsock_offer_post(&t->rg, 2, 3, &b, 8, 80, &g) >= 0);
	/* same ports, other family: distinct keys */
	assert_int_equal(ivsock_offer_take(&t->rg, &c, &chan, &cg, &vm), -ENOENT);
	assert_int_equal(ivsock_offer_take(&t->rg, &b, &chan, &cg, &vm), 0);
	assert_int_equal(chan, 8);
	assert_int_equal(cg, 80);
	assert_int_equal(vm, 2);
	assert_int_equal(ivsock_offer_take(&t->rg, &b, &chan, &cg, &vm), -ENOENT);
	assert_int_equal(ivsock_offer_take(&t->rg, &a, &chan, &cg, NULL), 0);
	assert_int_equal(chan, 7);
	assert_int_equal(cg, 70);
}

static void test_invalid(void **state)
{
	struct test_region *t = *state;
	struct ivsock_tuple m = tup4(1);
	uint32_t g;

	m.dst.family = IVSOCK_AF_INET6;
	assert_int_equal(ivsock_offer_post(&t->rg, 0, 0, &m, 1, 1, &g), -EINVAL);
	m = tup4(1);
	m.src.family = m.dst.family = 0;
	assert_int_equal(ivsock_offer_post(&t->rg, 0, 0, &m, 1, 1, &g), -EINVAL);
	assert_int_equal(ivsock_offer_cancel(&t->rg, 64, 1), -EINVAL);
}

static void test_duplicate(void **state)
{
	struct test_region *t = *state;
	struct ivsock_tuple a = tup4(1234);
	uint32_t g;

	assert_true(ivsock_offer_post(&t->rg, 0, 0, &a, 1, 1, &g) >= 0);
	assert_int_equal(ivsock_offer_post(&t->rg, 0, 0, &a, 2, 2, &g), -EEXIST);
}

/* Tuples whose hash lands on the same table slot. */
static int same_bucket(struct test_region *t, struct ivsock_tuple *out, int want)
{
	uint32_t mask = t->rg.offer_cap - 1, target = ivsock_tuple_hash(&(struct ivsock_tuple){
		.src = tup4(1).src, .dst = tup4(1).dst, .sport = 1, .dport = 5000 }) & mask;
	int n = 0;
	uint32_t sp;

	for (sp = 1; sp < 65536 && n < want; sp++) {
		struct ivsock_tuple x = tup4((uint16_t)sp);

		if ((ivsock_tuple_hash(&x) & mask) == target)
			out[n++] = x;
	}
	return n;
}

static void test_collisions(void **state)
{
	struct test_region *t = *state;
	struct ivsock_tuple x[IVSOCK_OFFER_PROBE + 1];
	int idx[IVSOCK_OFFER_PROBE];
	uint32_t g, chan, cg;
	int i;

	assert_int_equal(same_bucket(t, x, IVSOCK_OFFER_PROBE + 1), IVSOCK_OFFER_PROBE + 1);
	for (i = 0; i < IVSOCK_OFFER_PROBE; i++) {
		idx[i] = ivsock_offer_post(&t->rg, 0, 1, &x[i], (uint32_t)i, 100 + (uint32_t)i, &g);
		assert_true(idx[i] >= 0);
		if (i)
			assert_int_equal(idx[i], (idx[i - 1] + 1) & (int)(t->rg.offer_cap - 1));
	}
	/* the probe window is full for this bucket */
	assert_int_equal(ivsock_offer_post(&t->rg, 0, 1, &x[IVSOCK_OFFER_PROBE], 99, 99, &g),
			 -ENOSPC);
	/* take from the middle: the others are still found past the hole */
	for (i = IVSOCK_OFFER_PROBE / 2; i < IVSOCK_OFFER_PROBE; i++) {
		assert_int_equal(ivsock_offer_take(&t->rg, &x[i], &chan, &cg, NULL), 0);
		assert_int_equal(chan, (uint32_t)i);
		assert_int_equal(cg, 100 + (uint32_t)i);
	}
	for (i = IVSOCK_OFFER_PROBE / 2 - 1; i >= 0; i--) {
		assert_int_equal(ivsock_offer_take(&t->rg, &x[i], &chan, &cg, NULL), 0);
		assert_int_equal(chan, (uint32_t)i);
	}
	/* a hole then lets the 33rd in */
	assert_true(ivsock_offer_post(&t->rg, 0, 1, &x[IVSOCK_OFFER_PROBE], 99, 99, &g) >= 0);
}

static void test_cancel(void **state)
{
	struct test_region *t = *state;
	struct ivsock_tuple a = tup4(5);
	uint32_t g, chan, cg;
	int i;

	i = ivsock_offer_post(&t->rg, 0, 1, &a, 1, 1, &g);
	assert_true(i >= 0);
	assert_int_equal(ivsock_offer_cancel(&t->rg, (uint32_t)i, g), 0);
	assert_int_equal(ivsock_offer_take(&t->rg, &a, &chan, &cg, NULL), -ENOENT);
	/* the taker won: cancelling is stale */
	i = ivsock_offer_post(&t->rg, 0, 1, &a, 1, 1, &g);
	assert_int_equal(ivsock_offer_take(&t->rg, &a, &chan, &cg, NULL), 0);
	assert_int_equal(ivsock_offer_cancel(&t->rg, (uint32_t)i, g), -ESTALE);
}

static void test_release_owner(void **state)
{
	struct test_region *t = *state;
	struct ivsock_tuple a = tup4(1), b = tup4(2), c = tup6(3);
	uint32_t g, chan, cg;

	ivsock_offer_post(&t->rg, 0, 1, &a, 1, 1, &g);
	ivsock_offer_post(&t->rg, 0, 1, &c, 1, 1, &g);
	ivsock_offer_post(&t->rg, 0, 2, &b, 1, 1, &g);
	assert_int_equal(ivsock_offer_release_owner(&t->rg, 0, 1), 2);
	assert_int_equal(ivsock_offer_take(&t->rg, &a, &chan, &cg, NULL), -ENOENT);
	assert_int_equal(ivsock_offer_take(&t->rg, &b, &chan, &cg, NULL), 0);
}

/* Two takers race for each offer: exactly one gets it. */
struct takers {
	struct ivsock_region *rg;
	pthread_barrier_t go, done;
	struct ivsock_tuple tup;
	_Atomic int wins;
	int rounds;
};

static void *taker(void *arg)
{
	struct takers *k = arg;
	int i;

	for (i = 0; i < k->rounds; i++) {
		uint32_t chan, cg;

		pthread_barrier_wait(&k->go);
		if (ivsock_offer_take(k->rg, &k->tup, &chan, &cg, NULL) == 0) {
			assert_int_equal(chan, (uint32_t)i);
			atomic_fetch_add(&k->wins, 1);
		}
		pthread_barrier_wait(&k->done);
	}
	return NULL;
}

static void test_take_race(void **state)
{
	struct test_region *t = *state;
	struct takers k = { .rg = &t->rg, .tup = tup4(777), .rounds = 2000 };
	pthread_t a, b;
	int i;

	pthread_barrier_init(&k.go, NULL, 3);
	pthread_barrier_init(&k.done, NULL, 3);
	assert_int_equal(pthread_create(&a, NULL, taker, &k), 0);
	assert_int_equal(pthread_create(&b, NULL, taker, &k), 0);
	for (i = 0; i < k.rounds; i++) {
		uint32_t g;

		assert_true(ivsock_offer_post(&t->rg, 0, 1, &k.tup, (uint32_t)i, 1, &g) >= 0);
		pthread_barrier_wait(&k.go);
		pthread_barrier_wait(&k.done);
		assert_int_equal(atomic_load(&k.wins), i + 1);
	}
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	pthread_barrier_destroy(&k.go);
	pthread_barrier_destroy(&k.done);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_post_take_v4_v6),
		T(test_invalid),
		T(test_duplicate),
		T(test_collisions),
		T(test_cancel),
		T(test_release_owner),
		T(test_take_race),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
