// SPDX-License-Identifier: MIT
// A peer process killed with SIGKILL: after writing and dying with nothing
// unread, the client reads everything then EOF; dying with unread bytes in
// its receive path, the client sees ECONNRESET.
#include "conf.h"

#include <poll.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void reap(pid_t pid)
{
	int st;

	CHECK(waitpid(pid, &st, 0) == pid);
	if (WIFSIGNALED(st))
		tp("child killed by signal %s", sigabbrev_np(WTERMSIG(st)));
	else
		tp("child exited %d", WEXITSTATUS(st));
}

int case_server(int lfd)
{
	int fd;
	pid_t pid;

	/* Connection A: the child writes 50000 bytes, then dies. */
	fd = conf_accept(lfd);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		uint64_t out = 0;

		send_stream(fd, SEED_S2C, &out, 50000, 5000);
		kill(getpid(), SIGKILL);
	}
	close(fd);
	reap(pid);
	/* Connection B: the child waits for the client's bytes, dies unread. */
	fd = conf_accept(lfd);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		while (poll(&p, 1, -1) < 0)
			;
		kill(getpid(), SIGKILL);
	}
	close(fd);
	reap(pid);
	return 0;
}

int case_client(void)
{
	int fd = conf_connect();
	uint64_t in = 0, out = 0;
	char b[1000];
	ssize_t r;

	recv_stream(fd, SEED_S2C, &in, 50000, 4096);
	tr("A: read after peer died (nothing unread there)", read(fd, b, sizeof(b)));
	close(fd);
	fd = conf_connect();
	send_stream(fd, SEED_C2S, &out, 1000, 1000);
	r = read(fd, b, sizeof(b));
	tr("B: read after peer died with unread bytes", r);
	tr("B: read again", read(fd, b, sizeof(b)));
	close(fd);
	return 0;
}
