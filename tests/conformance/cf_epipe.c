// SPDX-License-Identifier: MIT
// Writing to a connection the peer has closed: SIGPIPE kills a process with
// the default action; with SIGPIPE ignored write fails with EPIPE; with
// MSG_NOSIGNAL a handler never runs and send fails with EPIPE.
#include "conf.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t npipe;
static void on_pipe(int s) { (void)s; npipe++; }

/* Write 100-byte pieces until one fails; return that result (errno kept). */
static long write_until_error(int fd, int flags)
{
	char b[100];
	struct timespec ts = { 0, 5 * 1000 * 1000 };

	memset(b, 'x', sizeof(b));
	for (int i = 0; i < 2000; i++) {
		ssize_t r = flags < 0 ? write(fd, b, sizeof(b)) : send(fd, b, sizeof(b), flags);

		if (r < 0)
			return r;
		nanosleep(&ts, NULL);
	}
	return 0;
}

int case_server(int lfd)
{
	for (int i = 0; i < 3; i++) {
		int fd = conf_accept(lfd);

		tok_send(fd, 'c');
		tr("close", close(fd));
	}
	return 0;
}

int case_client(void)
{
	int fd, st;
	pid_t pid;

	/* 1: default SIGPIPE action, in a child. */
	fd = conf_connect();
	tok_recv(fd, 'c');
	tr("read at EOF", wait_eof(fd));
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		write_until_error(fd, -1);
		_exit(0);
	}
	CHECK(waitpid(pid, &st, 0) == pid);
	if (WIFSIGNALED(st))
		tp("writer child killed by %s", sigabbrev_np(WTERMSIG(st)));
	else
		tp("writer child exited %d", WEXITSTATUS(st));
	close(fd);

	/* 2: SIGPIPE ignored. */
	fd = conf_connect();
	tok_recv(fd, 'c');
	tr("read at EOF", wait_eof(fd));
	signal(SIGPIPE, SIG_IGN);
	tr("write until error (SIGPIPE ignored)", write_until_error(fd, -1));
	tr("write once more", write(fd, "y", 1));
	close(fd);

	/* 3: a handler, and MSG_NOSIGNAL. */
	signal(SIGPIPE, on_pipe);
	fd = conf_connect();
	tok_recv(fd, 'c');
	tr("read at EOF", wait_eof(fd));
	tr("send until error (MSG_NOSIGNAL)", write_until_error(fd, MSG_NOSIGNAL));
	tp("SIGPIPE handler ran %d times", (int)npipe);
	tr("plain send once more", send(fd, "y", 1, 0));
	tp("SIGPIPE handler ran %d times", (int)npipe);
	close(fd);
	return 0;
}
