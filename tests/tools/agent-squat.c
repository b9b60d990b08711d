// SPDX-License-Identifier: MIT
/*
 * agent-squat: a fake ivsock-agent for the trust tests. It binds the agent's
 * socket name and misbehaves in one of these ways:
 *
 *   silent    accepts connections, never reads, never answers
 *   mute      reads requests, never answers
 *   forge     answers HELLO with a forged reply: a formatted region memfd
 *             (unsealed) and an eventfd, as an impostor would
 *   unsealed  like forge (formatted region, right size) but the memfd can
 *             still be shrunk
 *   short     a sealed memfd of one page while the reply claims 4 MiB
 *   notevent  a good sealed region, but a pipe instead of an eventfd
 *
 * Every byte received from any client is counted; the total is rewritten to
 * COUNTFILE after each receive (and is 0 from the start).
 *
 * usage: agent-squat MODE NAME COUNTFILE     (NAME: @abstract or a path)
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "ivsock/agent_client.h"
#include "ivsock/layout.h"
#include "ivsock/msg.h"

#define REGION (4u << 20)
#define MAXC 256

static const char *countfile;
static unsigned long long total;

static void save_count(void)
{
	FILE *f = fopen(countfile, "w");

	if (f) {
		fprintf(f, "%llu\n", total);
		fclose(f);
	}
}

static uint64_t g_tables_size; /* of the region it made */

static int make_region(const char *mode, uint64_t *format_id)
{
	bool sealed = strcmp(mode, "unsealed") != 0 && strcmp(mode, "forge") != 0;
	size_t size = strcmp(mode, "short") == 0 ? 4096 : REGION;
	struct ivsock_region_params p;
	struct ivsock_region rg;
	int fd = memfd_create("agent-squat", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	void *m;

	if (fd < 0 || ftruncate(fd, REGION) < 0)
		return -1;
	m = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		return -1;
	ivsock_region_params_single(&p, 4096);
	p.vm_cap = 4;
	p.channel_cap = 16;
	p.listener_cap = 16;
	p.offer_cap = 64;
	if (ivsock_region_format(&rg, m, REGION, &p) < 0)
		return -1;
	*format_id = rg.format_id;
	g_tables_size = rg.tables_size;
	munmap(m, REGION);
	/* "short": the superblock survives, the rest is cut off */
	if (size != REGION && ftruncate(fd, (off_t)size) < 0)
		return -1;
	if (sealed && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
		return -1;
	return fd;
}

static void answer_hello(int c, const char *mode, const struct ivsock_msg_hdr *req,
			 int region, uint64_t format_id)
{
	struct {
		struct ivsock_msg_hdr h;
		struct ivsock_ag_hello_reply r;
	} rep;
	char ctl[CMSG_SPACE(2 * sizeof(int))];
	struct iovec iov = { &rep, sizeof(rep) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
			    .msg_controllen = sizeof(ctl) };
	struct cmsghdr *cm;
	int fds[2], pp[2] = { -1, -1 };

	memset(&rep, 0, sizeof(rep));
	ivsock_msg_init(&rep.h, IVSOCK_AG_HELLO_REPLY, sizeof(rep.r), req->seq);
	rep.r.backend = IVSOCK_BACKEND_SERVER;
	rep.r.vm_index = 0;
	rep.r.vm_gen = 1;
	rep.r.peer_id = 1;
	rep.r.client_id = 1;
	rep.r.vector = 0;
	rep.r.region_size = REGION;
	rep.r.format_id = format_id;
	rep.r.tables_size = g_tables_size;
	fds[0] = region;
	if (strcmp(mode, "notevent") == 0) {
		if (pipe2(pp, O_CLOEXEC) < 0)
			return;
		fds[1] = pp[0];
	} else {
		fds[1] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	}
	memset(ctl, 0, sizeof(ctl));
	cm = CMSG_FIRSTHDR(&m);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(2 * sizeof(int));
	memcpy(CMSG_DATA(cm), fds, sizeof(fds));
	if (sendmsg(c, &m, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		perror("agent-squat: sendmsg");
	close(fds[1]);
	if (pp[1] >= 0)
		close(pp[1]);
}

int main(int argc, char **argv)
{
	struct pollfd p[MAXC + 1];
	struct sockaddr_un sa;
	uint64_t format_id = 0;
	const char *mode;
	int lfd, n = 1, region = -1;
	socklen_t len;

	if (argc != 4) {
		fprintf(stderr, "usage: agent-squat silent|mute|forge|unsealed|short|notevent "
				"NAME COUNTFILE\n");
		return 2;
	}
	mode = argv[1];
	countfile = argv[3];
	signal(SIGPIPE, SIG_IGN);
	save_count();
	if (strcmp(mode, "silent") && strcmp(mode, "mute")) {
		region = make_region(mode, &format_id);
		if (region < 0) {
			perror("agent-squat: region");
			return 1;
		}
	}
	if (ivsock_agent_sockaddr(argv[2], &sa, &len) < 0)
		return 2;
	if (sa.sun_path[0])
		unlink(sa.sun_path);
	lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, len) < 0 || listen(lfd, 64) < 0) {
		perror("agent-squat: listen");
		return 1;
	}
	if (sa.sun_path[0])
		chmod(sa.sun_path, 0666);
	printf("listening\n");
	fflush(stdout);
	p[0] = (struct pollfd){ .fd = lfd, .events = POLLIN };
	for (;;) {
		if (poll(p, (nfds_t)n, -1) < 0) {
			if (errno == EINTR)
				continue;
			return 1;
		}
		if ((p[0].revents & POLLIN) && n <= MAXC) {
			int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

			if (c >= 0) {
				/* silent: accepted, never looked at again */
				p[n++] = (struct pollfd){ .fd = c,
							  .events = strcmp(mode, "silent") ? POLLIN : 0 };
			}
		}
		for (int i = 1; i < n; i++) {
			uint8_t buf[65536];
			ssize_t r;

			if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			r = recv(p[i].fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (r <= 0) {
				close(p[i].fd);
				p[i--] = p[--n];
				continue;
			}
			total += (unsigned long long)r;
			save_count();
			if (strcmp(mode, "mute") == 0 || strcmp(mode, "silent") == 0 ||
			    (size_t)r < sizeof(struct ivsock_msg_hdr))
				continue;
			struct ivsock_msg_hdr h;

			memcpy(&h, buf, sizeof(h));
			if (h.type == IVSOCK_AG_HELLO)
				answer_hello(p[i].fd, mode, &h, region, format_id);
		}
	}
}
