// SPDX-License-Identifier: MIT
/*
 * Unit tests of the doorbell backends (protocol/src/doorbell.c): eventfd
 * backend with a lazy resolver, forget_peer, drain/signal, fd ownership
 * (no leaks), and the guest-driver backend's register store and ioctl path.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <fcntl.h>
#include <sys/eventfd.h>

#include "ivsock/doorbell.h"
#include "ivsock/ivsock_dev.h"
#include "testutil.h"

struct resolver {
	int calls;
	int fail;
	uint32_t last_peer, last_vector;
	int last_fd;
};

static int resolve(void *arg, uint32_t peer, uint32_t vector)
{
	struct resolver *r = arg;
	int fd;

	r->calls++;
	r->last_peer = peer;
	r->last_vector = vector;
	if (r->fail)
		return r->fail;
	fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	r->last_fd = fd;
	return fd < 0 ? -errno : fd;
}

static void test_signal_drain(void **state)
{
	int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(ivsock_eventfd_drain(fd), 0);
	assert_int_equal(ivsock_eventfd_signal(fd), 0);
	assert_int_equal(ivsock_eventfd_signal(fd), 0);
	assert_int_equal(ivsock_eventfd_signal(fd), 0);
	assert_int_equal(ivsock_eventfd_drain(fd), 3);
	assert_int_equal(ivsock_eventfd_drain(fd), 0);
	assert_int_equal(ivsock_eventfd_drain(-1), -EBADF);
	assert_int_equal(ivsock_eventfd_signal(-1), -EBADF);
	close(fd);
}

static void test_resolver(void **state)
{
	struct resolver r = { 0 };
	int base = count_fds(), wait = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), fd;
	struct ivsock_doorbell *db = ivsock_evdb_new(wait, resolve, &r);

	(void)state;
	assert_non_null(db);
	assert_int_equal(ivsock_doorbell_wait_fd(db), wait);
	assert_int_equal(ivsock_evdb_get(db, 3, 1), -ENOENT);
	/* first notify resolves and rings */
	assert_int_equal(ivsock_doorbell_notify(db, 3, 1), 0);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.last_peer, 3);
	assert_int_equal(r.last_vector, 1);
	fd = ivsock_evdb_get(db, 3, 1);
	assert_int_equal(fd, r.last_fd);
	/* later notifies reuse the fd */
	assert_int_equal(ivsock_doorbell_notify(db, 3, 1), 0);
	assert_int_equal(r.calls, 1);
	assert_int_equal(ivsock_eventfd_drain(fd), 2);
	/* another vector of the same peer, and another peer */
	assert_int_equal(ivsock_doorbell_notify(db, 3, 2), 0);
	assert_int_equal(ivsock_doorbell_notify(db, 4, 1), 0);
	assert_int_equal(r.calls, 3);
	assert_int_equal(ivsock_eventfd_drain(fd), 0); /* (3,1) not rung by those */
	/* forget peer 3: both its fds are closed and resolved again later */
	ivsock_evdb_forget_peer(db, 3);
	assert_int_equal(ivsock_evdb_get(db, 3, 1), -ENOENT);
	assert_int_equal(ivsock_evdb_get(db, 3, 2), -ENOENT);
	assert_true(ivsock_evdb_get(db, 4, 1) >= 0);
	assert_int_equal(count_fds(), base + 2); /* wait fd + peer 4 */
	assert_int_equal(ivsock_doorbell_notify(db, 3, 1), 0);
	assert_int_equal(r.calls, 4);
	/* a resolver failure is passed through and nothing is installed */
	r.fail = -EHOSTUNREACH;
	assert_int_equal(ivsock_doorbell_notify(db, 9, 9), -EHOSTUNREACH);
	assert_int_equal(ivsock_evdb_get(db, 9, 9), -ENOENT);
	ivsock_doorbell_free(db);
	assert_int_equal(count_fds(), base);
	ivsock_doorbell_free(NULL);
}

static void test_set_replaces(void **state)
{
	int base = count_fds();
	struct ivsock_doorbell *db = ivsock_evdb_new(-1, NULL, NULL);
	int a = eventfd(0, EFD_NONBLOCK), b = eventfd(0, EFD_NONBLOCK), i;

	(void)state;
	assert_int_equal(ivsock_doorbell_notify(db, 1, 0), -ENOENT); /* no resolver */
	assert_int_equal(ivsock_evdb_set(db, 1, 0, -1), -EBADF);
	assert_int_equal(ivsock_evdb_set(db, 1, 0, a), 0);
	assert_int_equal(ivsock_evdb_set(db, 1, 0, a), 0); /* same fd: kept open */
	assert_int_equal(fcntl(a, F_GETFD) >= 0, 1);
	assert_int_equal(ivsock_evdb_set(db, 1, 0, b), 0); /* replaces: a closed */
	assert_int_equal(fcntl(a, F_GETFD), -1);
	assert_int_equal(ivsock_doorbell_notify(db, 1, 0), 0);
	assert_int_equal(ivsock_eventfd_drain(b), 1);
	/* grow past the initial capacity */
	for (i = 0; i < 40; i++)
		assert_int_equal(ivsock_evdb_set(db, 100 + (uint32_t)i, 0, eventfd(0, 0)), 0);
	for (i = 0; i < 40; i++)
		assert_true(ivsock_evdb_get(db, 100 + (uint32_t)i, 0) >= 0);
	ivsock_doorbell_free(db);
	assert_int_equal(count_fds(), base);
}

static void test_devdb_regs(void **state)
{
	uint32_t regs[64] = { 0 };
	int base = count_fds();
	int devfd = open("/dev/null", O_RDWR | O_CLOEXEC);
	struct ivsock_doorbell *db = ivsock_devdb_new(devfd, -1, regs);

	(void)state;
	assert_non_null(db);
	assert_int_equal(ivsock_doorbell_notify(db, 0x1234, 7), 0);
	assert_int_equal(regs[IVSOCK_DEV_REG_DOORBELL / 4], 0x12340007);
	assert_int_equal(ivsock_doorbell_notify(db, 70000, 1), -EINVAL);
	assert_int_equal(ivsock_doorbell_notify(db, 1, 70000), -EINVAL);
	ivsock_doorbell_free(db);
	assert_int_equal(count_fds(), base);
}

static void test_devdb_ioctl(void **state)
{
	int devfd = open("/dev/null", O_RDWR | O_CLOEXEC);
	struct ivsock_doorbell *db = ivsock_devdb_new(devfd, -1, NULL);

	(void)state;
	/* /dev/null is not our device: the ioctl's error comes back */
	assert_int_equal(ivsock_doorbell_notify(db, 1, 1), -ENOTTY);
	ivsock_doorbell_free(db);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_signal_drain),
		cmocka_unit_test(test_resolver),
		cmocka_unit_test(test_set_replaces),
		cmocka_unit_test(test_devdb_regs),
		cmocka_unit_test(test_devdb_ioctl),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
