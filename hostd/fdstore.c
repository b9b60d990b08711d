// SPDX-License-Identifier: MIT
/*
 * Restart survival through systemd's file descriptor store. While it runs,
 * ivsockd hands systemd (FDSTORE=1, FDNAME=...) everything a successor
 * needs to keep serving without QEMU noticing:
 *
 *   DOM.region        the sealed region memfd
 *   DOM.listen        the listening ivshmem server socket
 *   DOM.cPEER.eVM.GEN.sock  the connection socket of admitted client PEER,
 *                     whose directory entry is VM (generation GEN)
 *   DOM.cPEER.vK      PEER's own eventfd for vector K (what others ring)
 *   DOM.cPEER.dK      the daemon's private eventfd for PEER, vector K
 *
 * (one datagram per descriptor: systemd keeps the store as a list whose
 * order is not a contract, so every name is unique). A client's names are
 * removed (FDSTOREREMOVE=1) when it disconnects. On start the successor
 * takes them back from sd_listen_fds_with_names() (domain.c), and whatever
 * it does not claim is closed and removed from the store.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <systemd/sd-daemon.h>

#include "fdstore.h"
#include "log.h"

static bool enabled;
static int nstored;              /* descriptors received at start */
static int *stored_fd;           /* -1 once claimed */
static char **stored_name;

bool fdstore_enabled(void)
{
	return enabled;
}

bool fdstore_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (!n || n > 200)
		return false;
	for (; *s; s++)
		if (*s < 0x21 || *s > 0x7e || *s == ':')
			return false;
	return true;
}

void fdstore_init(bool want)
{
	char **names = NULL;
	int n, i;

	enabled = want && getenv("NOTIFY_SOCKET") != NULL;
	n = sd_listen_fds_with_names(1, &names);
	if (n <= 0) {
		strv_free_compat(names);
		return;
	}
	stored_fd = calloc((size_t)n, sizeof(int));
	stored_name = calloc((size_t)n, sizeof(char *));
	if (!stored_fd || !stored_name) {
		log_err("fd store: out of memory: closing %d stored descriptors", n);
		for (i = 0; i < n; i++)
			close(SD_LISTEN_FDS_START + i);
		strv_free_compat(names);
		free(stored_fd);
		free(stored_name);
		stored_fd = NULL;
		stored_name = NULL;
		return;
	}
	for (i = 0; i < n; i++) {
		stored_fd[i] = SD_LISTEN_FDS_START + i;
		stored_name[i] = names && names[i] ? names[i] : NULL;
		if (names)
			names[i] = NULL;
	}
	free(names);
	nstored = n;
	log_notice("fd store: %d descriptor%s handed back", n, n == 1 ? "" : "s");
}

void strv_free_compat(char **v)
{
	size_t i;

	if (!v)
		return;
	for (i = 0; v[i]; i++)
		free(v[i]);
	free(v);
}

int fdstore_take(const char *name)
{
	int i, fd;

	for (i = 0; i < nstored; i++) {
		if (stored_fd[i] >= 0 && stored_name[i] && !strcmp(stored_name[i], name)) {
			fd = stored_fd[i];
			stored_fd[i] = -1;
			return fd;
		}
	}
	return -1;
}

int fdstore_next_client(const char *dom, uint32_t *peer, uint32_t *vm, uint32_t *gen)
{
	size_t dl = strlen(dom);
	int i;

	for (i = 0; i < nstored; i++) {
		const char *s = stored_name[i];
		unsigned int p, v, g;
		int end = 0;

		if (stored_fd[i] < 0 || !s || strncmp(s, dom, dl) || s[dl] != '.')
			continue;
		if (sscanf(s + dl + 1, "c%u.e%u.%u.sock%n", &p, &v, &g, &end) == 3 &&
		    end > 0 && !s[dl + 1 + (size_t)end] && p <= 65535) {
			*peer = p;
			*vm = v;
			*gen = g;
			return 0;
		}
	}
	return -ENOENT;
}

void fdstore_done(void)
{
	int i, left = 0;

	for (i = 0; i < nstored; i++) {
		if (stored_fd[i] >= 0) {
			log_info("fd store: '%s' not claimed: closed and removed",
				 stored_name[i] ? stored_name[i] : "?");
			close(stored_fd[i]);
			if (stored_name[i])
				fdstore_remove(stored_name[i]);
			left++;
		}
		free(stored_name[i]);
	}
	free(stored_fd);
	free(stored_name);
	stored_fd = NULL;
	stored_name = NULL;
	nstored = 0;
	(void)left;
}

int fdstore_put(const char *name, int fd)
{
	char msg[300];
	int rc;

	if (!enabled)
		return 0;
	snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=%s", name);
	rc = sd_pid_notify_with_fds(0, 0, msg, &fd, 1);
	if (rc <= 0) {
		log_warn("fd store: cannot store '%s': %s", name,
			 rc < 0 ? strerror(-rc) : "no notification socket");
		return rc < 0 ? rc : -ENOTCONN;
	}
	return 0;
}

void fdstore_remove(const char *name)
{
	char msg[300];

	if (!enabled)
		return;
	snprintf(msg, sizeof(msg), "FDSTOREREMOVE=1\nFDNAME=%s", name);
	sd_pid_notify(0, 0, msg);
}
