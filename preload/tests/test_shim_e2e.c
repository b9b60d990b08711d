// SPDX-License-Identifier: MIT
/* End-to-end tests of libivsock.so on loopback without namespaces: a private
 * ivsockd and ivsock-agent, then shim-stream client/server pairs under
 * LD_PRELOAD (accelerated stream, accept-then-fork, connect/close cycles,
 * server speaking first), plus pass-through with no agent and when disabled.
 * Every byte is checked by shim-stream; the shim's counters prove the path. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>

extern char **environ;

static char top[PATH_MAX];     /* $(O) */
static char dir[64];           /* private work dir */
static char agent_name[64];    /* "@ivsock-test-<pid>" */
static pid_t daemon_pid = -1, agent_pid = -1;

static void path(char *out, size_t n, const char *rel)
{
	if ((size_t)snprintf(out, n, "%s/%s", top, rel) >= n)
		abort();
}

static pid_t spawn(char *const argv[], char *const envp[], const char *out_file)
{
	posix_spawn_file_actions_t fa;
	pid_t pid;

	posix_spawn_file_actions_init(&fa);
	if (out_file) {
		posix_spawn_file_actions_addopen(&fa, 1, out_file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		posix_spawn_file_actions_adddup2(&fa, 1, 2);
	}
	if (posix_spawn(&pid, argv[0], &fa, NULL, argv, envp) != 0)
		pid = -1;
	posix_spawn_file_actions_destroy(&fa);
	return pid;
}

/* Wait up to secs; kill on timeout. @return exit status, or -1. */
static int reap(pid_t pid, int secs)
{
	int st;

	for (int i = 0; i < secs * 100; i++) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return -1;
}

static bool file_has(const char *file, const char *needle)
{
	char buf[8192];
	FILE *f = fopen(file, "r");
	size_t n;

	if (!f)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return strstr(buf, needle) != NULL;
}

/* Value of counter name in the shim's stats line in file (-1: absent). */
static long shim_stat(const char *file, const char *name)
{
	char buf[8192], key[64], *p;
	FILE *f = fopen(file, "r");
	size_t n;

	if (!f)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	snprintf(key, sizeof(key), " %s=", name);
	p = strstr(buf, key);
	return p ? strtol(p + strlen(key), NULL, 10) : -1;
}

/* Environment for a shimmed child: ours plus LD_PRELOAD and IVSOCK_*. */
static char **shim_env(const char *agent, bool disable)
{
	static char *env[256];
	static char pre[PATH_MAX + 16], ag[96];
	int n = 0;

	for (char **e = environ; *e && n < 240; e++)
		if (strncmp(*e, "LD_PRELOAD=", 11) && strncmp(*e, "IVSOCK_", 7))
			env[n++] = *e;
	if ((size_t)snprintf(pre, sizeof(pre), "LD_PRELOAD=%s/preload/libivsock.so", top) >=
	    sizeof(pre))
		abort();
	snprintf(ag, sizeof(ag), "IVSOCK_AGENT=%s", agent);
	env[n++] = pre;
	env[n++] = ag;
	env[n++] = "IVSOCK_STATS=1";
	if (disable)
		env[n++] = "IVSOCK_DISABLE=1";
	env[n] = NULL;
	return env;
}

/* Server then client of shim-stream; @return client status. */
static int pair(const char *tag, char *const sargs[], char *const cargs[], char **env)
{
	char tool[PATH_MAX], sout[128], cout[128];
	char *sv[12], *cv[12];
	pid_t s, c;
	int i, rc;

	path(tool, sizeof(tool), "preload/tests/shim-stream");
	snprintf(sout, sizeof(sout), "%s/%s.srv", dir, tag);
	snprintf(cout, sizeof(cout), "%s/%s.cli", dir, tag);
	sv[0] = cv[0] = tool;
	for (i = 0; sargs[i] && i < 10; i++)
		sv[i + 1] = sargs[i];
	sv[i + 1] = NULL;
	for (i = 0; cargs[i] && i < 10; i++)
		cv[i + 1] = cargs[i];
	cv[i + 1] = NULL;
	s = spawn(sv, env, sout);
	assert_true(s > 0);
	for (i = 0; i < 300 && !file_has(sout, "listening "); i++)
		usleep(10000);
	{ /* the server listens on port 0: substitute the port it got */
		static char got[16];
		FILE *f = fopen(sout, "r");
		unsigned p = 0;
		char line[256];

		while (f && fgets(line, sizeof(line), f))
			if (sscanf(line, "listening %u", &p) == 1)
				break;
		if (f)
			fclose(f);
		snprintf(got, sizeof(got), "%u", p);
		for (i = 1; cv[i]; i++)
			if (!strcmp(cv[i], "PORT"))
				cv[i] = got;
	}
	c = spawn(cv, env, cout);
	assert_true(c > 0);
	rc = reap(c, 120);
	if (reap(s, 10) != 0)
		rc = rc ? rc : 99;
	return rc;
}

static int setup(void **state)
{
	char d[PATH_MAX], ctl[128], dom[128], spec[200], bin[PATH_MAX], abin[PATH_MAX];
	char log1[128], log2[128];
	ssize_t n;

	(void)state;
	n = readlink("/proc/self/exe", d, sizeof(d) - 1);
	if (n < 0)
		return -1;
	d[n] = '\0';
	*strrchr(d, '/') = '\0';
	if ((size_t)snprintf(top, sizeof(top), "%s/../..", d) >= sizeof(top)) /* $(O) */
		return -1;
	path(bin, sizeof(bin), "hostd/ivsockd");
	path(abin, sizeof(abin), "guestdrv/agent/ivsock-agent");
	if (access(bin, X_OK) || access(abin, X_OK)) {
		fprintf(stderr, "ivsockd/ivsock-agent not built: skipping\n");
		return 0;
	}
	snprintf(dir, sizeof(dir), "/tmp/ivsock-shim-unit.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(ctl, sizeof(ctl), "%s/ctl.sock", dir);
	snprintf(dom, sizeof(dom), "%s/domain.sock", dir);
	snprintf(spec, sizeof(spec), "unit=%s,size=32M,vectors=4", dom);
	snprintf(log1, sizeof(log1), "%s/ivsockd.log", dir);
	snprintf(log2, sizeof(log2), "%s/agent.log", dir);
	snprintf(agent_name, sizeof(agent_name), "@ivsock-unit-%d", (int)getpid());
	{
		char *argv[] = { bin, "--foreground", "--domain", spec, "--control", ctl, NULL };

		daemon_pid = spawn(argv, environ, log1);
	}
	for (int i = 0; i < 300 && access(dom, F_OK); i++)
		usleep(10000);
	{
		char *argv[] = { abin, "--backend", "server", "--server", dom, "--listen",
				 agent_name, "--hostname", "unit", "--foreground", NULL };

		agent_pid = spawn(argv, environ, log2);
	}
	for (int i = 0; i < 300 && !file_has(log2, "registered"); i++)
		usleep(10000);
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	if (agent_pid > 0)
		kill(agent_pid, SIGTERM), reap(agent_pid, 5);
	if (daemon_pid > 0)
		kill(daemon_pid, SIGTERM), reap(daemon_pid, 5);
	if (dir[0] && !getenv("IVSOCK_TEST_KEEP")) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			return 0;
	}
	return 0;
}

#define NEED_AGENT() do { if (agent_pid <= 0) skip(); } while (0)

static void accelerated_stream(void **state)
{
	char port[16], f[160];

	(void)state;
	NEED_AGENT();
	snprintf(port, sizeof(port), "0");
	char *s[] = { "server", port, "1", NULL };
	char *c[] = { "client", "127.0.0.1", "PORT", "8388608", "1", NULL };

	assert_int_equal(pair("stream", s, c, shim_env(agent_name, false)), 0);
	snprintf(f, sizeof(f), "%s/stream.cli", dir);
	assert_true(file_has(f, "accelerated_connect=1 "));
	assert_true(file_has(f, "ring_tx_bytes=8388608 "));
	assert_true(file_has(f, "ring_rx_bytes=8388608 "));
	snprintf(f, sizeof(f), "%s/stream.srv", dir);
	assert_true(file_has(f, "accelerated_accept=1 "));
}

static void fork_server_and_speak_first(void **state)
{
	char port[16], f[160];

	(void)state;
	NEED_AGENT();
	snprintf(port, sizeof(port), "0");
	char *s[] = { "--speak-first", "--fork", "server", port, "3", NULL };
	char *c[] = { "--speak-first", "client", "127.0.0.1", "PORT", "1048576", "3", NULL };

	assert_int_equal(pair("fork", s, c, shim_env(agent_name, false)), 0);
	snprintf(f, sizeof(f), "%s/fork.cli", dir);
	assert_true(file_has(f, "accelerated_connect=3 "));
	assert_true(file_has(f, "ring_rx_bytes=3145761 ")); /* 3 MiB + 3 banners */
}

static void cycles(void **state)
{
	char port[16], f[160];

	(void)state;
	NEED_AGENT();
	snprintf(port, sizeof(port), "0");
	char *s[] = { "server", port, "500", NULL };
	char *c[] = { "cycles", "127.0.0.1", "PORT", "500", NULL };

	assert_int_equal(pair("cycles", s, c, shim_env(agent_name, false)), 0);
	snprintf(f, sizeof(f), "%s/cycles.cli", dir);
	/* 500 cycles, each on rings unless the (small) pool was momentarily
	 * full of channels the server had not closed yet: then on TCP */
	assert_int_equal(shim_stat(f, "accelerated_connect") + shim_stat(f, "fallback_no_rings"), 500);
	assert_true(shim_stat(f, "accelerated_connect") > 0);
}

static void no_agent_passes_through(void **state)
{
	char port[16], f[160];

	(void)state;
	snprintf(port, sizeof(port), "0");
	char *s[] = { "server", port, "1", NULL };
	char *c[] = { "client", "127.0.0.1", "PORT", "2097152", "1", NULL };

	assert_int_equal(pair("noagent", s, c, shim_env("@ivsock-unit-nobody-here", false)), 0);
	snprintf(f, sizeof(f), "%s/noagent.cli", dir);
	if (!dir[0])
		skip();
	assert_true(file_has(f, "fallback_no_agent=1 "));
	assert_true(file_has(f, "ring_tx_bytes=0 "));
}

static void disabled_passes_through(void **state)
{
	char port[16], f[160];

	(void)state;
	NEED_AGENT();
	snprintf(port, sizeof(port), "0");
	char *s[] = { "server", port, "1", NULL };
	char *c[] = { "client", "127.0.0.1", "PORT", "2097152", "1", NULL };

	assert_int_equal(pair("disabled", s, c, shim_env(agent_name, true)), 0);
	snprintf(f, sizeof(f), "%s/disabled.cli", dir);
	assert_true(file_has(f, "accelerated_connect=0 "));
	assert_true(file_has(f, "ring_tx_bytes=0 "));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(accelerated_stream),
		cmocka_unit_test(fork_server_and_speak_first),
		cmocka_unit_test(cycles),
		cmocka_unit_test(no_agent_passes_through),
		cmocka_unit_test(disabled_passes_through),
	};

	if (getenv("IVSOCK_SANITIZER")) {
		/* A sanitizer-built .so cannot be preloaded into tools of
		 * another build reliably; the table test covers that build. */
		printf("skipping under %s\n", getenv("IVSOCK_SANITIZER"));
		return 77;
	}
	return cmocka_run_group_tests(tests, setup, teardown);
}
