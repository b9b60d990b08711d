// SPDX-License-Identifier: MIT
/* The shim's own fds stay out of the program's way (no agent, no root
 * needed): shim-hostile fdcheck under LD_PRELOAD=libivsock.so checks that
 * the log fd is high and looks never opened to close/dup/fcntl, survives
 * closefrom(3) and close_range(3, ~0U), moves away when the program dup2()s
 * or F_DUPFDs onto its number, is dropped unwritten after a raw dup2
 * syscall, and that the program's files hold only what it wrote. */
#include <limits.h>
#include <setjmp.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
#include <cmocka.h>

extern char **environ;

static char top[PATH_MAX];

static int run_fdcheck(const char *extra)
{
	char tool[PATH_MAX + 64], pre[PATH_MAX + 64], logf[PATH_MAX], ag[64], dir[] = "/tmp/ivs-fdguard.XXXXXX";
	char *env[256], *argv[4];
	int n = 0, st;
	pid_t pid;

	assert_non_null(mkdtemp(dir));
	snprintf(tool, sizeof(tool), "%s/preload/tests/shim-hostile", top);
	snprintf(pre, sizeof(pre), "LD_PRELOAD=%s/preload/libivsock.so", top);
	snprintf(logf, sizeof(logf), "IVSOCK_LOG_FILE=%s/shim.log", dir);
	snprintf(ag, sizeof(ag), "IVSOCK_AGENT=@ivsock-fdguard-none-%d", (int)getpid());
	for (char **e = environ; *e && n < 240; e++)
		if (strncmp(*e, "LD_PRELOAD=", 11) && strncmp(*e, "IVSOCK_", 7))
			env[n++] = *e;
	env[n++] = pre;
	env[n++] = logf;
	env[n++] = ag;
	env[n++] = "IVSOCK_LOG=debug";
	if (extra)
		env[n++] = (char *)extra;
	env[n] = NULL;
	argv[0] = tool;
	argv[1] = "fdcheck";
	argv[2] = dir;
	argv[3] = NULL;
	assert_int_equal(posix_spawn(&pid, tool, NULL, NULL, argv, env), 0);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	{
		char cmd[PATH_MAX + 32];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", dir);
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void test_fdcheck(void **state)
{
	(void)state;
	assert_int_equal(run_fdcheck(NULL), 0);
}

static void test_fdcheck_stats(void **state)
{
	(void)state;
	/* the exit-time stats line goes to the moved log fd, nowhere else */
	assert_int_equal(run_fdcheck("IVSOCK_STATS=1"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fdcheck),
		cmocka_unit_test(test_fdcheck_stats),
	};
	char d[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", d, sizeof(d) - 1);

	/* a sanitized shim cannot be preloaded into a plain program */
	if (getenv("IVSOCK_SANITIZER")) {
		printf("skipping under %s\n", getenv("IVSOCK_SANITIZER"));
		return 77;
	}
	if (n <= 0)
		return 1;
	d[n] = '\0';
	*strrchr(d, '/') = '\0';
	if ((size_t)snprintf(top, sizeof(top), "%s/../..", d) >= sizeof(top))
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
