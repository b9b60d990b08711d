// SPDX-License-Identifier: MIT
/* Unit tests of the agent's client id and vector allocation (ids.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "../ids.h"

static void test_ids_unique_and_not_reused_early(void **state)
{
	struct agent_ids *ids = malloc(sizeof(*ids));
	int a, b, c;

	(void)state;
	agent_ids_init(ids, 4);
	a = agent_id_alloc(ids);
	b = agent_id_alloc(ids);
	assert_int_equal(a, 1);
	assert_int_equal(b, 2);
	agent_id_free(ids, (uint32_t)a);
	c = agent_id_alloc(ids);
	assert_int_equal(c, 3); /* 1 is free again but comes back later */
	agent_id_free(ids, 99);   /* not taken: ignored */
	agent_id_free(ids, 0);
	assert_int_equal(ids->live, 2);
	free(ids);
}

static void test_ids_exhaust_and_wrap(void **state)
{
	struct agent_ids *ids = malloc(sizeof(*ids));
	int id = 0;

	(void)state;
	agent_ids_init(ids, 1);
	for (uint32_t i = 1; i <= AGENT_CLIENT_ID_MAX; i++) {
		id = agent_id_alloc(ids);
		assert_int_equal(id, (int)i);
	}
	assert_int_equal(agent_id_alloc(ids), -ENOSPC);
	agent_id_free(ids, 777);
	assert_int_equal(agent_id_alloc(ids), 777); /* the only free one */
	assert_int_equal(agent_id_alloc(ids), -ENOSPC);
	free(ids);
}

static void test_vectors_round_robin_then_shared(void **state)
{
	struct agent_ids *ids = malloc(sizeof(*ids));
	uint32_t v[8];

	(void)state;
	agent_ids_init(ids, 4); /* client vectors 1..3 */
	for (int i = 0; i < 3; i++)
		v[i] = agent_vector_alloc(ids);
	assert_int_equal(v[0], 1);
	assert_int_equal(v[1], 2);
	assert_int_equal(v[2], 3);
	/* Out of free vectors: shared, least used first, round-robin. */
	v[3] = agent_vector_alloc(ids);
	v[4] = agent_vector_alloc(ids);
	assert_int_not_equal(v[3], 0);
	assert_int_not_equal(v[3], v[4]);
	/* A freed vector is preferred over sharing. */
	agent_vector_free(ids, 3);
	agent_vector_free(ids, v[3] == 3 ? 3 : 0);
	v[5] = agent_vector_alloc(ids);
	assert_true(v[5] >= 1 && v[5] <= 3);
	for (uint32_t k = 1; k < 4; k++)
		assert_true(ids->vec_users[k] <= 2);
	free(ids);
}

static void test_vectors_single(void **state)
{
	struct agent_ids ids;

	(void)state;
	agent_ids_init(&ids, 1);
	assert_int_equal(agent_vector_alloc(&ids), 0);
	assert_int_equal(agent_vector_alloc(&ids), 0);
	agent_ids_init(&ids, 0); /* clamped to 1 */
	assert_int_equal(ids.vectors, 1);
	agent_ids_init(&ids, 1000);
	assert_int_equal(ids.vectors, AGENT_VECTORS_MAX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ids_unique_and_not_reused_early),
		cmocka_unit_test(test_ids_exhaust_and_wrap),
		cmocka_unit_test(test_vectors_round_robin_then_shared),
		cmocka_unit_test(test_vectors_single),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
