// SPDX-License-Identifier: MIT
// fork: an accept-then-fork server (the child serves, the parent closes its
// copy), a connection served half by the child and half by the parent (both
// holding the fd), and a client that forks a writer child mid-stream.
#include "conf.h"

#include <sys/wait.h>
#include <unistd.h>

static void reap(pid_t pid, const char *who)
{
	int st;

	CHECK(waitpid(pid, &st, 0) == pid);
	tp("%s: exited %d", who, WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
}

/* Echo lock-step: read 16 KiB, verify, send 16 KiB of the reply stream. */
static void serve(int fd, uint64_t *in, uint64_t *out, int rounds)
{
	for (int i = 0; i < rounds; i++) {
		recv_stream(fd, SEED_C2S, in, 16384, 16384);
		send_stream(fd, SEED_S2C, out, 16384, 16384);
	}
}

int case_server(int lfd)
{
	uint64_t in = 0, out = 0;
	pid_t pid;
	int fd;

	/* 1: classic accept-then-fork, three clients one after another. */
	for (int c = 0; c < 3; c++) {
		fd = conf_accept(lfd);
		pid = fork();
		CHECK(pid >= 0);
		if (pid == 0) {
			close(lfd);
			in = out = 0;
			serve(fd, &in, &out, 16);
			CHECK(wait_eof(fd) == 0);
			_exit(0);
		}
		close(fd);
		reap(pid, "worker child");
	}
	/* 2: the child serves the first half; the parent, still holding the
	 * fd, serves the second half once the child is gone. */
	fd = conf_accept(lfd);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		in = out = 0;
		serve(fd, &in, &out, 8);
		_exit(0);
	}
	reap(pid, "half child");
	in = out = 8 * 16384;
	serve(fd, &in, &out, 8);
	tp("parent served the second half");
	tr("parent read at EOF", wait_eof(fd));
	close(fd);
	/* 3: the client forks a writer; we just read. */
	fd = conf_accept(lfd);
	in = 0;
	recv_stream(fd, SEED_C2S, &in, 3 << 20, 65536);
	tr("read at EOF after parent+child wrote", wait_eof(fd));
	close(fd);
	return 0;
}

int case_client(void)
{
	uint64_t in, out;
	pid_t pid;
	int fd;

	for (int c = 0; c < 4; c++) {
		fd = conf_connect();
		in = out = 0;
		for (int i = 0; i < 16; i++) {
			send_stream(fd, SEED_C2S, &out, 16384, 4000);
			recv_stream(fd, SEED_S2C, &in, 16384, 4096);
		}
		tp("connection %d: 16 echo rounds ok", c);
		if (c == 3)
			tr("shutdown(SHUT_WR)", shutdown(fd, SHUT_WR));
		tr("close", close(fd));
	}
	/* 3: parent writes 1 MiB, a child 1 MiB, the parent the last 1 MiB. */
	fd = conf_connect();
	out = 0;
	send_stream(fd, SEED_C2S, &out, 1 << 20, 65536);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		send_stream(fd, SEED_C2S, &out, 1 << 20, 65536);
		_exit(0);
	}
	reap(pid, "writer child");
	out = 2 << 20;
	send_stream(fd, SEED_C2S, &out, 1 << 20, 65536);
	tr("close", close(fd));
	return 0;
}
