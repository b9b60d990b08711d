// SPDX-License-Identifier: MIT
/*
 * Unit tests of the VM directory (protocol/src/directory.c): add, address
 * seqlock, lookups by peer and address, death, removal and validation of
 * what readers copy out.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <pthread.h>

#include "ivsock/directory.h"
#include "testutil.h"

static int setup(void **state)
{
	struct test_region *t = calloc(1, sizeof(*t));
	struct ivsock_region_params p;

	test_params_small(&p);
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

static struct ivsock_addr v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d)
{
	struct ivsock_addr x = { .family = IVSOCK_AF_INET, .bytes = { a, b, c, d } };

	return x;
}

static struct ivsock_addr v6(uint8_t last)
{
	struct ivsock_addr x = { .family = IVSOCK_AF_INET6, .bytes = { 0xfd, 0, [15] = last } };

	return x;
}

static void test_add_read(void **state)
{
	struct test_region *t = *state;
	struct ivsock_vm_info info;
	uint8_t uuid[16] = { 1, 2, 3 };
	int a, b;

	a = ivsock_dir_add(&t->rg, 5, 4, "vm-a", uuid);
	b = ivsock_dir_add(&t->rg, 6, 2, "vm-b", NULL);
	assert_int_equal(a, 0);
	assert_int_equal(b, 1);
	assert_int_equal(ivsock_dir_read(&t->rg, (uint32_t)a, &info), 0);
	assert_int_equal(info.index, 0);
	assert_int_equal(info.state, IVSOCK_VM_ALIVE);
	assert_int_equal(info.peer_id, 5);
	assert_int_equal(info.vectors, 4);
	assert_string_equal(info.name, "vm-a");
	assert_memory_equal(info.uuid, uuid, 16);
	assert_int_equal(info.naddrs, 0);
	assert_true(info.gen > 0);
	assert_true(ivsock_dir_alive(&t->rg, 0, info.gen));
	assert_true(ivsock_dir_alive(&t->rg, 0, 0));
	assert_false(ivsock_dir_alive(&t->rg, 0, info.gen + 1));
	assert_false(ivsock_dir_alive(&t->rg, 2, 0));
	assert_false(ivsock_dir_alive(&t->rg, 99, 0));
	assert_int_equal(ivsock_dir_read(&t->rg, 2, &info), -ENOENT);
	assert_int_equal(ivsock_dir_read(&t->rg, 4, &info), -EINVAL);
	assert_int_equal(ivsock_dir_add(&t->rg, 70000, 1, "x", NULL), -EINVAL);
	/* fills up at vm_cap */
	assert_int_equal(ivsock_dir_add(&t->rg, 7, 1, "c", NULL), 2);
	assert_int_equal(ivsock_dir_add(&t->rg, 8, 1, "d", NULL), 3);
	assert_int_equal(ivsock_dir_add(&t->rg, 9, 1, "e", NULL), -ENOSPC);
}

static void test_name_truncated(void **state)
{
	struct test_region *t = *state;
	struct ivsock_vm_info info;
	char longname[200];

	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_int_equal(ivsock_dir_add(&t->rg, 1, 1, longname, NULL), 0);
	assert_int_equal(ivsock_dir_read(&t->rg, 0, &info), 0);
	assert_int_equal(strlen(info.name), IVSOCK_NAME_MAX - 1);
	assert_int_equal(ivsock_dir_set_name(&t->rg, 0, "renamed", NULL), 0);
	assert_int_equal(ivsock_dir_read(&t->rg, 0, &info), 0);
	assert_string_equal(info.name, "renamed");
	/* a hostile writer leaves no NUL: the reader's copy still has one */
	memset(t->rg.vms[0].name, 'x', IVSOCK_NAME_MAX);
	assert_int_equal(ivsock_dir_read(&t->rg, 0, &info), 0);
	assert_int_equal(strlen(info.name), IVSOCK_NAME_MAX - 1);
}

static void test_addrs_and_find(void **state)
{
	struct test_region *t = *state;
	struct ivsock_addr a[3] = { v4(10, 0, 0, 1), v6(1), v4(10, 0, 0, 9) };
	struct ivsock_addr other = v4(10, 0, 0, 2), a6 = v6(1);
	struct ivsock_vm_info info;
	struct ivsock_addr many[IVSOCK_VM_MAX_ADDRS + 1];

	assert_int_equal(ivsock_dir_add(&t->rg, 11, 1, "a", NULL), 0);
	assert_int_equal(ivsock_dir_add(&t->rg, 12, 1, "b", NULL), 1);
	assert_int_equal(ivsock_dir_set_addrs(&t->rg, 1, a, 3), 0);
	assert_int_equal(ivsock_dir_read(&t->rg, 1, &info), 0);
	assert_int_equal(info.naddrs, 3);
	assert_true(ivsock_addr_equal(&info.addrs[1], &a6));
	assert_int_equal(ivsock_dir_find_addr(&t->rg, &a[0]), 1);
	assert_int_equal(ivsock_dir_find_addr(&t->rg, &a6), 1);
	assert_int_equal(ivsock_dir_find_addr(&t->rg, &a[2]), 1);
	assert_int_equal(ivsock_dir_find_addr(&t->rg, &other), -ENOENT);
	assert_int_equal(ivsock_dir_find_peer(&t->rg, 12), 1);
	assert_int_equal(ivsock_dir_find_peer(&t->rg, 11), 0);
	assert_int_equal(ivsock_dir_find_peer(&t->rg, 13), -ENOENT);
	/* shrinking the list drops the old addresses */
	assert_int_equal(ivsock_dir_set_addrs(&t->rg, 1, a, 1), 0);
	assert_int_equal(ivsock_dir_find_addr(&t->rg, &a6), -ENOENT);
	assert_int_equal(ivsock_dir_set_addrs(&t->rg, 1, many, IVSOCK_VM_MAX_ADDRS + 1), -EINVAL);
	assert_int_equal(ivsock_dir_set_addrs(&t->rg, 9, a, 1), -EINVAL);
	/* the seqlock counter is even and moved on */
	assert_int_equal(ivsock_load_relaxed(&t->rg.vms[1].addr_seq) & 1, 0);
	assert_int_equal(ivsock_load_relaxed(&t->rg.vms[1].addr_seq), 4);
}

static void test_dead_remove(void **state)
{
	struct test_region *t = *state;
	struct ivsock_addr a = v4(192, 168, 1, 1);
	struct ivsock_vm_info info;
	uint32_t gen;

	assert_int_equal(ivsock_dir_add(&t->rg, 3, 1, "a", NULL), 0);
	assert_int_equal(ivsock_dir_set_addrs(&t->rg, 0, &a, 1), 0);
	assert_int_equal(ivsock_dir_read(&t->rg, 0, &info), 0);
	gen = info.gen;
	assert_int_equal(ivsock_dir_mark_dead(&t->rg, 0), 0);
	assert_int_equal(ivsock_dir_mark_dead(&t->rg, 0), -ESTALE);
	/* dead VMs are not found, but can still be read */
	assert_int_equal(ivsock_dir_find_peer(&t->rg, 3), -ENOENT);
	assert_int_equal(ivsock_dir_find_addr(&t->rg, &a), -ENOENT);
	assert_false(ivsock_dir_alive(&t->rg, 0, gen));
	assert_int_equal(ivsock_dir_read(&t->rg, 0, &info), 0);
	assert_int_equal(info.state, IVSOCK_VM_DEAD);
	assert_int_equal(ivsock_dir_remove(&t->rg, 0), 0);
	assert_int_equal(ivsock_dir_read(&t->rg, 0, &info), -ENOENT);
	assert_int_equal(ivsock_dir_remove(&t->rg, 0), -ESTALE);
	assert_int_equal(ivsock_dir_mark_dead(&t->rg, 7), -EINVAL);
	/* the slot is reused with a new generation, with no old addresses */
	assert_int_equal(ivsock_dir_add(&t->rg, 4, 1, "b", NULL), 0);
	assert_int_equal(ivsock_dir_read(&t->rg, 0, &info), 0);
	assert_true(info.gen != gen);
	assert_int_equal(info.naddrs, 0);
	assert_false(ivsock_dir_alive(&t->rg, 0, gen));
}

static void test_hostile_fields(void **state)
{
	struct test_region *t = *state;
	struct ivsock_vm_info info;

	assert_int_equal(ivsock_dir_add(&t->rg, 3, 1, "a", NULL), 0);
	/* a writer stuck mid-update (odd sequence): readers give up, no hang */
	ivsock_store_relaxed(&t->rg.vms[0].addr_seq, 5);
	assert_int_equal(ivsock_dir_read(&t->rg, 0, &info), -EAGAIN);
	ivsock_store_relaxed(&t->rg.vms[0].addr_seq, 6);
	/* naddrs beyond the array is clamped */
	t->rg.vms[0].naddrs = 1000;
	assert_int_equal(ivsock_dir_read(&t->rg, 0, &info), 0);
	assert_int_equal(info.naddrs, IVSOCK_VM_MAX_ADDRS);
	/* peer IDs beyond 16 bits are refused */
	t->rg.vms[0].peer_id = 1U << 20;
	assert_int_equal(ivsock_dir_read(&t->rg, 0, &info), -EPROTO);
}

/* A writer thread flips between two address sets; readers must only ever
 * see one whole set (seqlock). */
struct flip {
	struct ivsock_region *rg;
	_Atomic int stop;
};

static void *flipper(void *arg)
{
	struct flip *f = arg;
	struct ivsock_addr s[2][IVSOCK_VM_MAX_ADDRS];
	int i, k = 0;

	for (i = 0; i < IVSOCK_VM_MAX_ADDRS; i++) {
		s[0][i] = v4(10, 1, 1, 1);
		s[1][i] = v6(2);
	}
	while (!atomic_load(&f->stop)) {
		k ^= 1;
		ivsock_dir_set_addrs(f->rg, 0, s[k], k ? IVSOCK_VM_MAX_ADDRS : 3);
	}
	return NULL;
}

static void test_seqlock_consistent(void **state)
{
	struct test_region *t = *state;
	struct flip f = { .rg = &t->rg };
	struct ivsock_vm_info info;
	pthread_t th;
	int i, ok = 0;

	assert_int_equal(ivsock_dir_add(&t->rg, 3, 1, "a", NULL), 0);
	assert_int_equal(pthread_create(&th, NULL, flipper, &f), 0);
	for (i = 0; i < 200000; i++) {
		uint32_t j;

		if (ivsock_dir_read(&t->rg, 0, &info) != 0)
			continue;
		ok++;
		if (info.naddrs == 0)
			continue;
		assert_true(info.naddrs == 3 || info.naddrs == IVSOCK_VM_MAX_ADDRS);
		for (j = 0; j < info.naddrs; j++)
			assert_int_equal(info.addrs[j].family,
					 info.naddrs == 3 ? IVSOCK_AF_INET : IVSOCK_AF_INET6);
	}
	atomic_store(&f.stop, 1);
	pthread_join(th, NULL);
	assert_true(ok > 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_add_read),
		T(test_name_truncated),
		T(test_addrs_and_find),
		T(test_dead_remove),
		T(test_hostile_fields),
		T(test_seqlock_consistent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
