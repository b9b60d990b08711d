// SPDX-License-Identifier: MIT
/* Client identification from SO_PEERCRED and /proc/PID/cmdline (QEMU's
 * -name and -uuid options). */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "identify.h"

void ident_sanitize(char *name)
{
	for (; *name; name++)
		if (!isalnum((unsigned char)*name) && !strchr("._:@+-", *name))
			*name = '_';
}

int ident_parse_uuid(const char *s, uint8_t out[16])
{
	int i = 0;

	while (*s && i < 32) {
		int v;

		if (*s == '-' ) {
			s++;
			continue;
		}
		if (!isxdigit((unsigned char)*s))
			return -EINVAL;
		v = isdigit((unsigned char)*s) ? *s - '0' : (tolower((unsigned char)*s) - 'a' + 10);
		if (i % 2 == 0)
			out[i / 2] = (uint8_t)(v << 4);
		else
			out[i / 2] |= (uint8_t)v;
		i++;
		s++;
	}
	return i == 32 && !*s ? 0 : -EINVAL;
}

void ident_format_uuid(const uint8_t u[16], char out[37])
{
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
		 "%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2], u[3], u[4], u[5],
		 u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}

/* Copy a name, truncated to IVSOCK_NAME_MAX - 1 bytes. */
static void set_name(char *dst, const char *src)
{
	size_t n = strnlen(src, IVSOCK_NAME_MAX - 1);

	memcpy(dst, src, n);
	dst[n] = '\0';
}

/*
 * -name VALUE: "NAME[,process=..][,debug-threads=..]" or "guest=NAME,...".
 * Elements are split on single commas; ",," is an escaped comma.
 */
static void parse_name(struct client_ident *id, const char *p)
{
	char elem[256];
	bool first = true;

	while (*p) {
		size_t n = 0;

		while (*p && n + 1 < sizeof(elem)) {
			if (*p == ',') {
				if (p[1] != ',')
					break;
				p++;
			}
			elem[n++] = *p++;
		}
		elem[n] = '\0';
		while (*p && !(*p == ',' && p[1] != ','))  /* overlong: skip rest */
			p += *p == ',' ? 2 : 1;
		if (*p == ',')
			p++;
		if (!strncmp(elem, "guest=", 6)) {
			set_name(id->name, elem + 6);
			return;
		}
		if (first && !strchr(elem, '='))
			set_name(id->name, elem);
		first = false;
	}
}

void ident_parse_cmdline(struct client_ident *id, const char *buf, size_t len)
{
	const char *argv[512];
	size_t i, argc = 0, off = 0;
	const char *base;

	id->qemu = false;
	while (off < len && argc < 512) {
		size_t n = strnlen(buf + off, len - off);

		if (off + n == len)     /* unterminated last argument: ignore */
			break;
		argv[argc++] = buf + off;
		off += n + 1;
	}
	if (!argc)
		return;
	base = strrchr(argv[0], '/');
	base = base ? base + 1 : argv[0];
	if (strncmp(base, "qemu", 4))
		return;
	id->qemu = true;
	for (i = 1; i + 1 < argc; i++) {
		const char *o = argv[i];

		if (o[0] == '-' && o[1] == '-')
			o++;
		if (!strcmp(o, "-name"))
			parse_name(id, argv[++i]);
		else if (!strcmp(o, "-uuid"))
			id->has_uuid = ident_parse_uuid(argv[++i], id->uuid) == 0;
	}
	ident_sanitize(id->name);
}

int ident_creds(struct client_ident *id, int sock)
{
	struct ucred cr;
	socklen_t sl = sizeof(cr);

	memset(id, 0, sizeof(*id));
	if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cr, &sl) < 0)
		return -errno;
	id->pid = cr.pid;
	id->uid = cr.uid;
	id->gid = cr.gid;
	snprintf(id->name, sizeof(id->name), "pid-%d", (int)cr.pid);
	return 0;
}

void ident_cmdline(struct client_ident *id)
{
	char path[64], buf[8192];
	ssize_t n;
	size_t len = 0;
	int fd;

	id->name[0] = '\0';
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)id->pid);
	fd = id->pid > 0 ? open(path, O_RDONLY | O_CLOEXEC) : -1;
	if (fd >= 0) {
		while (len < sizeof(buf) &&
		       (n = read(fd, buf + len, sizeof(buf) - len)) > 0)
			len += (size_t)n;
		close(fd);
		ident_parse_cmdline(id, buf, len);
	}
	if (!id->name[0])
		snprintf(id->name, sizeof(id->name), "%s%d", id->qemu ? "qemu-pid-" : "pid-",
			 (int)id->pid);
}

int ident_client(struct client_ident *id, int sock)
{
	int rc = ident_creds(id, sock);

	if (rc == 0)
		ident_cmdline(id);
	return rc;
}
