// SPDX-License-Identifier: MIT
// Signals during blocking calls: read without SA_RESTART fails with EINTR;
// with SA_RESTART it resumes and returns the data; poll and epoll_wait fail
// with EINTR even with SA_RESTART. A helper thread asks the server for data
// only after the handler ran, so the order is fixed.
#include "conf.h"

#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

static sem_t fired;
static volatile sig_atomic_t nalrm;
static int cfd;
static pthread_t main_thread;

static void on_alrm(int s)
{
	(void)s;
	nalrm++;
	sem_post(&fired);
}

static void handler(int flags)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alrm;
	sa.sa_flags = flags;
	sigemptyset(&sa.sa_mask);
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
}

/* Helper: wait until the main thread is blocked, signal it, wait for the
 * handler, then (if asked) tell the server to send. */
static void *helper(void *p)
{
	long want_data = (long)p;
	struct timespec ts = { 0, 100 * 1000 * 1000 };

	nanosleep(&ts, NULL); /* the signal may also land before the call: see below */
	pthread_kill(main_thread, SIGUSR1);
	while (sem_wait(&fired) < 0)
		;
	if (want_data)
		tok_send(cfd, 'd');
	return NULL;
}

static void run_helper(long want_data, pthread_t *t)
{
	sigset_t m;

	sigemptyset(&m);
	sigaddset(&m, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &m, NULL); /* the helper never takes it */
	CHECK(pthread_create(t, NULL, helper, (void *)want_data) == 0);
	pthread_sigmask(SIG_UNBLOCK, &m, NULL);
}

int case_server(int lfd)
{
	int fd = conf_accept(lfd);
	uint64_t out = 0;

	for (int i = 0; i < 2; i++) {
		tok_recv(fd, 'd');
		send_stream(fd, SEED_S2C, &out, 100, 100);
	}
	tr("read at EOF", wait_eof(fd));
	close(fd);
	return 0;
}

int case_client(void)
{
	struct pollfd p;
	struct epoll_event ev = { .events = EPOLLIN };
	uint64_t in = 0;
	char b[100];
	pthread_t t;
	ssize_t r;
	int ep;

	sem_init(&fired, 0, 0);
	main_thread = pthread_self();
	cfd = conf_connect();
	/*
	 * A signal that lands before the call starts would leave it blocked
	 * forever (no data comes without SA_RESTART): the helper waits 100 ms
	 * first. Not a timing assertion: a late signal makes the test hang and
	 * fail by timeout, never pass wrongly.
	 */
	handler(0);
	run_helper(0, &t);
	tr("read, signal without SA_RESTART", read(cfd, b, sizeof(b)));
	pthread_join(t, NULL);
	tok_send(cfd, 'd');
	recv_stream(cfd, SEED_S2C, &in, 100, 100);

	handler(SA_RESTART);
	run_helper(1, &t);
	r = read(cfd, b, sizeof(b));
	tr("read, signal with SA_RESTART", r);
	if (r > 0)
		verify(SEED_S2C, &in, b, r);
	pthread_join(t, NULL);
	if (in < 200)
		recv_stream(cfd, SEED_S2C, &in, 200 - in, 100);

	run_helper(0, &t);
	p.fd = cfd;
	p.events = POLLIN;
	tr("poll, signal with SA_RESTART", poll(&p, 1, -1));
	pthread_join(t, NULL);

	ep = epoll_create1(0);
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &ev) == 0);
	run_helper(0, &t);
	tr("epoll_wait, signal with SA_RESTART", epoll_wait(ep, &ev, 1, -1));
	pthread_join(t, NULL);
	tp("handler ran %d times", (int)nalrm);
	close(ep);
	close(cfd);
	return 0;
}
