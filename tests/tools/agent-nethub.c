// SPDX-License-Identifier: MIT
/*
 * agent-nethub: a tiny Ethernet hub for VM tests. QEMU guests join it with
 * `-netdev stream,server=off,addr.type=unix,addr.path=PATH` (frames are a
 * 4-byte big-endian length plus the frame), and an optional TAP device puts
 * the current network namespace on the same segment. Every frame goes to
 * every other port. No MAC learning: it is for a handful of test hosts.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>

#define MAX_PORTS 8
#define FRAME_MAX 65536

struct port {
	int fd;
	bool tap;
	uint8_t buf[4 + FRAME_MAX]; /* stream reassembly */
	size_t have;
};

static struct port ports[MAX_PORTS];
static int nports;

static int write_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n) {
		ssize_t w = write(fd, b, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

static void drop(int i)
{
	fprintf(stderr, "agent-nethub: port %d (fd %d) gone\n", i, ports[i].fd);
	close(ports[i].fd);
	ports[i] = ports[--nports];
}

static void forward(int from, const uint8_t *frame, uint32_t len)
{
	uint32_t be = htonl(len);

	for (int i = 0; i < nports; i++) {
		if (i == from)
			continue;
		if (ports[i].tap) {
			if (write(ports[i].fd, frame, len) < 0 && errno != EAGAIN)
				perror("agent-nethub: tap write");
		} else {
			/* Header and frame in one buffer: QEMU reads a stream. */
			uint8_t out[4 + FRAME_MAX];

			memcpy(out, &be, 4);
			memcpy(out + 4, frame, len);
			if (write_all(ports[i].fd, out, 4 + len) < 0)
				fprintf(stderr, "agent-nethub: write to port %d failed\n", i);
		}
	}
}

/* Read from a stream port and forward every complete frame. @return -1 at EOF. */
static int read_stream(int i)
{
	struct port *p = &ports[i];
	ssize_t n = read(p->fd, p->buf + p->have, sizeof(p->buf) - p->have);
	size_t off = 0;

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 0;
	if (n <= 0)
		return -1;
	p->have += (size_t)n;
	while (p->have - off >= 4) {
		uint32_t len;

		memcpy(&len, p->buf + off, 4);
		len = ntohl(len);
		if (len > FRAME_MAX)
			return -1;
		if (p->have - off < 4 + (size_t)len)
			break;
		forward(i, p->buf + off + 4, len);
		off += 4 + len;
	}
	memmove(p->buf, p->buf + off, p->have - off);
	p->have -= off;
	return 0;
}

static int open_tap(const char *name)
{
	struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI };
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return -1;
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int main(int argc, char **argv)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *path = NULL, *tap = NULL;
	int lfd, c;

	while ((c = getopt(argc, argv, "l:t:h")) != -1) {
		switch (c) {
		case 'l': path = optarg; break;
		case 't': tap = optarg; break;
		default:
			fprintf(stderr, "usage: agent-nethub -l SOCKPATH [-t TAPNAME]\n");
			return c == 'h' ? 0 : 2;
		}
	}
	if (!path || strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "agent-nethub: -l SOCKPATH is required\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (tap) {
		ports[0].fd = open_tap(tap);
		if (ports[0].fd < 0) {
			perror("agent-nethub: tap");
			return 1;
		}
		ports[0].tap = true;
		nports = 1;
	}
	strcpy(sa.sun_path, path);
	unlink(path);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 8) < 0) {
		perror("agent-nethub: listen");
		return 1;
	}
	fprintf(stderr, "agent-nethub: listening on %s%s%s\n", path, tap ? ", tap " : "",
		tap ? tap : "");
	for (;;) {
		struct pollfd pf[MAX_PORTS + 1];
		int n = nports;

		for (int i = 0; i < n; i++)
			pf[i] = (struct pollfd){ .fd = ports[i].fd, .events = POLLIN };
		pf[n] = (struct pollfd){ .fd = lfd, .events = POLLIN };
		if (poll(pf, (nfds_t)n + 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			return 1;
		}
		for (int i = n - 1; i >= 0; i--) {
			if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			if (ports[i].tap) {
				uint8_t frame[FRAME_MAX];
				ssize_t r = read(ports[i].fd, frame, sizeof(frame));

				if (r > 0)
					forward(i, frame, (uint32_t)r);
			} else if (read_stream(i) < 0) {
				drop(i);
			}
		}
		if (pf[n].revents & POLLIN) {
			int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

			if (fd >= 0 && nports < MAX_PORTS) {
				ports[nports] = (struct port){ .fd = fd };
				fprintf(stderr, "agent-nethub: port %d joined\n", nports);
				nports++;
			} else if (fd >= 0) {
				close(fd);
			}
		}
	}
}
