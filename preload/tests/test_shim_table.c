// SPDX-License-Identifier: MIT
/* Unit tests of the shim's fd table (sock_table.c): lookups of plain fds,
 * install/remove with reference and fd counts, limits, recycling with
 * stale-lookup validation, and concurrent lookups while fds come and go. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <pthread.h>

#include "../sock_table.c"

_Atomic unsigned ivs_fork_gen;

static void plain_fds_are_null(void **state)
{
	(void)state;
	assert_null(ivs_fd_lookup(0));
	assert_null(ivs_fd_lookup(12345));
	assert_null(ivs_fd_lookup(-1));
	assert_null(ivs_fd_lookup(1 << 30));
	assert_null(ivs_sock_get(7));
}

static void install_get_remove(void **state)
{
	struct ivs_sock *s = ivs_sock_new(IVS_CONN, NULL), *g;

	(void)state;
	assert_non_null(s);
	assert_int_equal(ivs_fd_install(5000, s), 0);
	assert_int_equal(ivs_fd_install(5001, s), 0); /* dup */
	assert_int_equal(ivs_sock_nfds(s), 2);
	g = ivs_fd_get(5001);
	assert_ptr_equal(g, s);
	assert_int_equal(atomic_load(&s->refs), 4); /* ours + 2 table + g */
	ivs_sock_put(g);
	/* connections that are PLAIN are invisible to the multiplexers */
	atomic_store(&s->state, IVS_ST_PLAIN);
	assert_null(ivs_sock_get(5000));
	atomic_store(&s->state, IVS_ST_CONNECTED);
	g = ivs_sock_get(5000);
	assert_ptr_equal(g, s);
	ivs_sock_put(g);
	assert_ptr_equal(ivs_fd_remove(5000), s);
	atomic_fetch_sub(&s->nfds, 1);
	ivs_sock_put(s);
	assert_null(ivs_fd_lookup(5000));
	assert_ptr_equal(ivs_fd_remove(5001), s);
	atomic_fetch_sub(&s->nfds, 1);
	ivs_sock_put(s);
	ivs_sock_put(s); /* creator's reference: back on the free list */
	assert_int_equal(atomic_load(&s->alive), 0);
}

static void limits(void **state)
{
	struct ivs_sock *s = ivs_sock_new(IVS_LISTENER, NULL);

	(void)state;
	assert_int_equal(ivs_fd_install(-1, s), -EMFILE);
	assert_int_equal(ivs_fd_install(TOP_SIZE * CHUNK_SIZE, s), -EMFILE);
	assert_null(ivs_sock_get(3)); /* listeners are not connections */
	ivs_sock_put(s);
}

static void recycle_and_stale_get(void **state)
{
	struct ivs_sock *a = ivs_sock_new(IVS_CONN, NULL), *b;

	(void)state;
	assert_int_equal(ivs_fd_install(100, a), 0);
	ivs_sock_put(a);
	/* close fd 100: the table's reference goes, the object is recycled */
	assert_ptr_equal(ivs_fd_remove(100), a);
	ivs_sock_put(a);
	b = ivs_sock_new(IVS_CONN, NULL);
	assert_ptr_equal(b, a); /* reused from the free list */
	assert_int_equal(ivs_fd_install(101, b), 0);
	/* a lookup of the old fd finds nothing, whatever memory it points to */
	assert_null(ivs_fd_get(100));
	/* a stale reference taken and dropped does not free the live object */
	atomic_fetch_add(&b->refs, 1);
	ivs_sock_put(b);
	assert_int_equal(atomic_load(&b->alive), 1);
	assert_ptr_equal(ivs_fd_get(101), b);
	ivs_sock_put(b);
	assert_ptr_equal(ivs_fd_remove(101), b);
	ivs_sock_put(b);
	ivs_sock_put(b);
}

static _Atomic int stop;

static void *churn(void *arg)
{
	(void)arg;
	for (int i = 0; i < 20000; i++) {
		struct ivs_sock *s = ivs_sock_new(IVS_CONN, NULL);
		int fd = 2000 + i % 64;

		atomic_store(&s->state, IVS_ST_CONNECTED);
		ivs_fd_install(fd, s);
		ivs_sock_put(s);
		s = ivs_fd_remove(fd);
		if (s)
			ivs_sock_put(s);
	}
	atomic_store(&stop, 1);
	return NULL;
}

static void concurrent_lookups(void **state)
{
	pthread_t t;
	long seen = 0;

	(void)state;
	pthread_create(&t, NULL, churn, NULL);
	while (!atomic_load(&stop)) {
		for (int fd = 2000; fd < 2064; fd++) {
			struct ivs_sock *s = ivs_sock_get(fd);

			if (s) {
				assert_int_equal(s->kind, IVS_CONN);
				assert_true(atomic_load(&s->refs) >= 1);
				seen++;
				ivs_sock_put(s);
			}
		}
	}
	pthread_join(t, NULL);
	for (int fd = 2000; fd < 2064; fd++)
		assert_null(ivs_fd_lookup(fd));
	(void)seen;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(plain_fds_are_null),
		cmocka_unit_test(install_get_remove),
		cmocka_unit_test(limits),
		cmocka_unit_test(recycle_and_stale_get),
		cmocka_unit_test(concurrent_lookups),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
