// SPDX-License-Identifier: MIT
/* Server backend: join ivsockd's domain socket as an ivshmem client, exactly
 * as QEMU does, and keep the eventfds it hands out (a simulated VM). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "ivsock/directory.h"
#include "ivsock/ivshmem_proto.h"
#include "backend.h"
#include "ids.h"
#include "log.h"

struct peer_fds {
	uint32_t peer;
	uint32_t nfds;   /* vectors announced so far: the next fd is vector nfds */
};

struct srv {
	int sock;
	int shm_fd;
	int own[AGENT_VECTORS_MAX];  /* our eventfds, one per vector (non-blocking) */
	uint32_t nown;
	struct peer_fds *peers;
	size_t npeers, cap;
};

static struct peer_fds *peer_get(struct srv *s, uint32_t peer, bool create)
{
	for (size_t i = 0; i < s->npeers; i++)
		if (s->peers[i].peer == peer)
			return &s->peers[i];
	if (!create)
		return NULL;
	if (s->npeers == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		struct peer_fds *n = realloc(s->peers, cap * sizeof(*n));

		if (!n)
			return NULL;
		s->peers = n;
		s->cap = cap;
	}
	s->peers[s->npeers] = (struct peer_fds){ .peer = peer };
	return &s->peers[s->npeers++];
}

static void peer_forget(struct agent_backend *b, uint32_t peer)
{
	struct srv *s = b->priv;

	for (size_t i = 0; i < s->npeers; i++) {
		if (s->peers[i].peer == peer) {
			s->peers[i] = s->peers[--s->npeers];
			break;
		}
	}
	ivsock_evdb_forget_peer(b->db, peer);
}

/* One server message: our own vector, a peer's next vector, or a departure. */
static int on_message(struct agent_backend *b, int64_t id, int fd)
{
	struct srv *s = b->priv;
	struct peer_fds *p;
	int rc;

	if (id < 0 || id > IVSOCK_IVSHMEM_MAX_PEER) {
		if (fd >= 0)
			close(fd);
		log_warn("server sent peer ID %lld: ignored", (long long)id);
		return 0;
	}
	if ((uint32_t)id == b->peer_id) {
		if (fd < 0) {
			log_warn("server says we disconnected: ignored");
			return 0;
		}
		if (s->nown >= AGENT_VECTORS_MAX || b->db->wait_fd >= 0) {
			close(fd); /* vectors are only handed out at greeting time */
			return 0;
		}
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
		s->own[s->nown++] = fd;
		return 0;
	}
	if (fd < 0) {
		if (peer_get(s, (uint32_t)id, false))
			log_info("peer %lld left", (long long)id);
		peer_forget(b, (uint32_t)id);
		return 0;
	}
	p = peer_get(s, (uint32_t)id, true);
	if (!p) {
		close(fd);
		return -ENOMEM;
	}
	rc = ivsock_evdb_set(b->db, p->peer, p->nfds, fd);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	if (p->nfds == 0)
		log_debug("peer %u joined", p->peer);
	p->nfds++;
	return 0;
}

static int connect_unix(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = -errno;

		close(fd);
		return e;
	}
	return fd;
}

static void srv_close(struct agent_backend *b)
{
	struct srv *s = b->priv;

	ivsock_doorbell_free(b->db);
	b->db = NULL;
	if (b->base)
		munmap(b->base, b->size);
	b->base = NULL;
	if (!s)
		return;
	for (uint32_t i = 0; i < s->nown; i++)
		close(s->own[i]);
	if (s->shm_fd >= 0)
		close(s->shm_fd);
	if (s->sock >= 0)
		close(s->sock);
	free(s->peers);
	free(s);
	b->priv = NULL;
	b->ctl_fd = -1;
}

static int srv_open(struct agent_backend *b, const char *path)
{
	struct ivsock_ivshmem_greeting g;
	struct ivsock_vm_info vi;
	uint32_t want = 0, v;
	struct stat st;
	struct srv *s;
	int rc;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->sock = s->shm_fd = -1;
	b->priv = s;
	b->ctl_fd = -1;
	b->db = ivsock_evdb_new(-1, NULL, NULL);
	if (!b->db) {
		rc = -ENOMEM;
		goto err;
	}
	rc = connect_unix(path);
	if (rc < 0) {
		log_err("cannot connect to ivsockd at %s: %s", path, strerror(-rc));
		goto err;
	}
	s->sock = rc;
	rc = ivsock_ivshmem_client_greeting(s->sock, &g);
	if (rc < 0) {
		log_err("ivshmem greeting from %s failed: %s", path, strerror(-rc));
		goto err;
	}
	s->shm_fd = g.shm_fd;
	b->peer_id = (uint32_t)g.own_id;
	if (fstat(s->shm_fd, &st) < 0 || st.st_size <= 0) {
		rc = -EINVAL;
		log_err("the region fd from %s has no size", path);
		goto err;
	}
	b->size = (size_t)st.st_size;
	b->base = mmap(NULL, b->size, PROT_READ | PROT_WRITE, MAP_SHARED, s->shm_fd, 0);
	if (b->base == MAP_FAILED) {
		b->base = NULL;
		rc = -errno;
		log_err("mmap of the region (%zu bytes): %s", b->size, strerror(-rc));
		goto err;
	}
	rc = agent_backend_attach(b, 2000);
	if (rc < 0)
		goto err;
	if (ivsock_dir_read(&b->rg, b->vm_index, &vi) == 0 && vi.vectors >= 1 &&
	    vi.vectors <= AGENT_VECTORS_MAX)
		want = vi.vectors;

	/* The rest of the greeting: other peers' vectors, then ours. Our own ID
	 * comes last; its count is the directory's vector count (or, if the
	 * entry does not say, whatever arrives before a short lull). */
	while (want == 0 || s->nown < want) {
		struct pollfd p = { .fd = s->sock, .events = POLLIN };
		int64_t id;
		int fd;

		rc = poll(&p, 1, (want == 0 && s->nown > 0) ? 200 : 5000);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc == 0) {
			if (want == 0 && s->nown > 0)
				break;
			log_err("ivsockd sent %u of our eventfds, expected %u", s->nown, want);
			rc = -ETIMEDOUT;
			goto err;
		}
		rc = ivsock_ivshmem_recv(s->sock, &id, &fd);
		if (rc < 0) {
			log_err("reading the greeting from %s: %s", path, strerror(-rc));
			goto err;
		}
		rc = on_message(b, id, fd);
		if (rc < 0)
			goto err;
	}
	b->vectors = s->nown;
	for (v = 0; v < s->nown; v++) {
		/* Our own (peer, vector) doorbells: loopback channels in this VM. */
		int d = fcntl(s->own[v], F_DUPFD_CLOEXEC, 0);

		if (d < 0 || ivsock_evdb_set(b->db, b->peer_id, v, d) < 0) {
			if (d >= 0)
				close(d);
			rc = -ENOMEM;
			goto err;
		}
	}
	b->db->wait_fd = fcntl(s->own[0], F_DUPFD_CLOEXEC, 0);
	if (b->db->wait_fd < 0) {
		rc = -errno;
		goto err;
	}
	fcntl(s->sock, F_SETFL, fcntl(s->sock, F_GETFL) | O_NONBLOCK);
	b->ctl_fd = s->sock;
	log_info("server backend: %s, peer %u, %u vectors, %zu peers known", path,
		 b->peer_id, b->vectors, s->npeers);
	return 0;
err:
	srv_close(b);
	return rc;
}

static int srv_handle_ctl(struct agent_backend *b)
{
	struct srv *s = b->priv;

	for (;;) {
		int64_t id;
		int fd, rc;

		rc = ivsock_ivshmem_recv(s->sock, &id, &fd);
		if (rc == -EAGAIN)
			return 0;
		if (rc == -ECONNRESET || rc == -EPROTO) {
			log_warn("ivsockd closed the domain socket%s; existing channels "
				 "keep working", rc == -EPROTO ? " (garbled)" : "");
			b->ctl_fd = -1;
			return -ECONNRESET;
		}
		if (rc < 0)
			return rc;
		rc = on_message(b, id, fd);
		if (rc < 0)
			return rc;
	}
}

static int srv_client_fds(struct agent_backend *b, uint32_t vector, uint64_t tables_size,
			  int fds[2], int *keep)
{
	struct srv *s = b->priv;

	(void)tables_size; /* a memfd cannot be cut: the client gets it all */
	*keep = -1;
	if (vector >= s->nown)
		return -EINVAL;
	fds[0] = fcntl(s->shm_fd, F_DUPFD_CLOEXEC, 0);
	if (fds[0] < 0)
		return -errno;
	fds[1] = fcntl(s->own[vector], F_DUPFD_CLOEXEC, 0);
	if (fds[1] < 0) {
		int e = -errno;

		close(fds[0]);
		return e;
	}
	return 0;
}

/* Nothing to cut: the client maps its region fd at the block's offset. */
static int srv_window(struct agent_backend *b, uint64_t off, uint64_t len, uint64_t wr_off,
		      uint64_t wr_len, uint32_t ring_peer, int *fd)
{
	(void)b, (void)off, (void)len, (void)wr_off, (void)wr_len, (void)ring_peer;
	*fd = -1;
	return 0;
}

static int srv_peer_fd(struct agent_backend *b, uint32_t peer, uint32_t vector)
{
	int fd = ivsock_evdb_get(b->db, peer, vector), d;

	if (fd < 0)
		return fd;
	d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	return d < 0 ? -errno : d;
}

static int srv_rescan(struct agent_backend *b)
{
	struct srv *s = b->priv;
	uint32_t daemon = b->rg.sb->daemon_peer_id; /* fixed at format time */
	int n = 0;

	for (size_t i = 0; i < s->npeers;) {
		uint32_t p = s->peers[i].peer;

		if (p != daemon && p != b->peer_id && ivsock_dir_find_peer(&b->rg, p) < 0) {
			log_info("peer %u is gone from the directory: forgetting it", p);
			peer_forget(b, p); /* moves the last entry into i */
			n++;
			continue;
		}
		i++;
	}
	return n;
}

const struct agent_backend_ops agent_backend_server_ops = {
	.name = "server",
	.kind = IVSOCK_BACKEND_SERVER,
	.open = srv_open,
	.handle_ctl = srv_handle_ctl,
	.client_fds = srv_client_fds,
	.window = srv_window,
	.peer_fd = srv_peer_fd,
	.rescan = srv_rescan,
	.close = srv_close,
};
