/* SPDX-License-Identifier: MIT */
/* systemd file descriptor store: what survives a restart (see fdstore.c). */
#ifndef IVSOCKD_FDSTORE_H
#define IVSOCKD_FDSTORE_H

#include <stdbool.h>
#include <stdint.h>

/* Collect descriptors handed back (LISTEN_FDS/LISTEN_FDNAMES, environment
 * unset) and decide whether to store: want && $NOTIFY_SOCKET is set. */
void fdstore_init(bool want);
bool fdstore_enabled(void);
/* Is this usable in FDNAME= (printable ASCII, no ':', short)? */
bool fdstore_name_ok(const char *s);
/* Claim a handed-back descriptor by name. @return fd or -1. */
int fdstore_take(const char *name);
/* Some unclaimed "DOM.cPEER.eVM.GEN.sock"? @return 0 with *peer, *vm,
 * *gen, or -ENOENT. */
int fdstore_next_client(const char *dom, uint32_t *peer, uint32_t *vm, uint32_t *gen);
/* Close and remove from the store whatever nobody claimed. */
void fdstore_done(void);
/* FDSTORE=1 one descriptor under a unique name (no-op when disabled). */
int fdstore_put(const char *name, int fd);
/* FDSTOREREMOVE=1 every descriptor of that name (no-op when disabled). */
void fdstore_remove(const char *name);

void strv_free_compat(char **v);

#endif
