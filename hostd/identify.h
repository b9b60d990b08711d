/* SPDX-License-Identifier: MIT */
/* Who is this ivshmem client? SO_PEERCRED pid -> /proc/PID/cmdline; QEMU
 * gives its -name (plain or guest=NAME,...) and -uuid. */
#ifndef IVSOCKD_IDENTIFY_H
#define IVSOCKD_IDENTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ivsock/layout.h"

struct client_ident {
	pid_t pid;                    /* 0 if unknown */
	uid_t uid;                    /* SO_PEERCRED */
	gid_t gid;
	bool qemu;
	bool has_uuid;
	char name[IVSOCK_NAME_MAX];   /* QEMU -name, or "pid-N" */
	uint8_t uuid[16];
};

/*
 * Parse a NUL-separated command line of len bytes. Sets qemu, name (if a
 * -name was given), uuid. Never fails; unknown input gives qemu=false.
 */
void ident_parse_cmdline(struct client_ident *id, const char *buf, size_t len);

/* Fill id for the peer of a connected UNIX socket. @return 0 or -errno. */
int ident_client(struct client_ident *id, int sock);
/* Only the kernel's word: pid, uid, gid from SO_PEERCRED. @return 0/-errno. */
int ident_creds(struct client_ident *id, int sock);
/* Then the process's own word (/proc/PID/cmdline: QEMU's -name, -uuid):
 * names an admitted client, never admits one. */
void ident_cmdline(struct client_ident *id);

/* "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" -> 16 bytes. @return 0 or -EINVAL. */
int ident_parse_uuid(const char *s, uint8_t out[16]);
void ident_format_uuid(const uint8_t u[16], char out[37]);

/* Replace anything but [A-Za-z0-9._:@+-] by '_' (names end up in logs,
 * tables and JSON). */
void ident_sanitize(char *name);

#endif
