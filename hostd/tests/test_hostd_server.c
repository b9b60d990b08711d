// SPDX-License-Identifier: MIT
/*
 * Runs the ivsockd binary of this build (so check-asan runs the daemon under
 * ASan/UBSan, leak check at exit included) against the fake ivshmem client:
 * greeting, mailbox, connect cycles, garbage and vanishing clients, then
 * SIGTERM must give a clean exit.
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <cmocka.h>

static char top[PATH_MAX], dir[64];
static pid_t daemon_pid;

static int run(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	rc = system(cmd);
	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static int setup(void **state)
{
	char exe[PATH_MAX], sock[128], ctl[128], dom[256], *p;
	struct stat st;
	ssize_t n;
	int i;

	(void)state;
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	assert_true(n > 0);
	exe[n] = '\0';
	p = dirname(dirname(dirname(exe)));   /* O/tests/unit/x -> O */
	snprintf(top, sizeof(top), "%s", p);
	snprintf(dir, sizeof(dir), "/tmp/test-hostd-server.XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(sock, sizeof(sock), "%s/a.sock", dir);
	snprintf(ctl, sizeof(ctl), "%s/ctl.sock", dir);
	snprintf(dom, sizeof(dom), "a=%s,size=8M,vectors=3,max_vms=8", sock);
	daemon_pid = fork();
	assert_true(daemon_pid >= 0);
	if (daemon_pid == 0) {
		char bin[PATH_MAX + 32], log[128];
		FILE *f;

		snprintf(bin, sizeof(bin), "%s/hostd/ivsockd", top);
		snprintf(log, sizeof(log), "%s/daemon.log", dir);
		f = freopen(log, "w", stderr);
		(void)f;
		execl(bin, bin, "--foreground", "--domain", dom, "--control", ctl,
		      "--log-level", "debug", (char *)NULL);
		_exit(127);
	}
	for (i = 0; i < 100 && stat(ctl, &st) < 0; i++)
		usleep(50000);
	assert_int_equal(stat(ctl, &st), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (daemon_pid > 0)
		kill(daemon_pid, SIGKILL);
	run("rm -rf %s", dir);
	return 0;
}

static void test_clients(void **state)
{
	(void)state;
	assert_int_equal(run("%s/tests/tools/ivshmem-fake-client -v 3 -r one,10.9.0.1 -p "
			     "%s/a.sock >%s/one.out", top, dir, dir), 0);
	assert_int_equal(run("grep -q 'register status=0' %s/one.out", dir), 0);
	assert_int_equal(run("grep -q 'ping status=0' %s/one.out", dir), 0);
	assert_int_equal(run("%s/tests/tools/ivshmem-fake-client -v 3 -q -c 100 %s/a.sock "
			     ">/dev/null", top, dir), 0);
	run("%s/tests/tools/ivshmem-fake-client -v 3 -g 100000 %s/a.sock >/dev/null 2>&1",
	    top, dir);
	assert_int_equal(run("%s/tests/tools/ivshmem-fake-client -V %s/a.sock", top, dir), 0);
	/* still serving, and the control API answers with the right counts */
	assert_int_equal(run("%s/tests/tools/ivshmem-fake-client -v 3 -r two,10.9.0.2 "
			     "%s/a.sock >%s/two.out", top, dir, dir), 0);
	assert_int_equal(run("grep -q 'register status=0' %s/two.out", dir), 0);
	assert_int_equal(run("for i in $(seq 50); do %s/hostd/ivsockctl -s %s/ctl.sock "
			     "domain list --json | jq -e '.domains[0] | .peer_ids_in_use == 1 "
			     "and .vms_alive == 0 and .vms_dead == 0' >/dev/null && exit 0; "
			     "sleep 0.1; done; exit 1", top, dir), 0);
}

static void test_clean_exit(void **state)
{
	int status;

	(void)state;
	assert_int_equal(kill(daemon_pid, SIGTERM), 0);
	assert_int_equal(waitpid(daemon_pid, &status, 0), daemon_pid);
	daemon_pid = 0;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		run("cat %s/daemon.log >&2", dir);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(run("test -e %s/a.sock", dir), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_clients),
		cmocka_unit_test(test_clean_exit),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
