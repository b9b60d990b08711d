// SPDX-License-Identifier: MIT
/* The fd table: fd -> accelerated socket, a two-level array of atomic
 * pointers grown chunk by chunk, read without a lock (a plain fd costs one
 * or two loads). Socket objects are recycled through a free list and never
 * returned to malloc, so a racing lookup can validate instead of crash. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "sock_int.h"

#define CHUNK_SHIFT 10
#define CHUNK_SIZE (1U << CHUNK_SHIFT)
#define TOP_SIZE 4096U /* 4 Mi fds; larger fds simply stay on TCP */

struct chunk {
	struct ivs_sock *_Atomic e[CHUNK_SIZE];
};

static struct chunk *_Atomic top[TOP_SIZE];
static pthread_mutex_t free_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ivs_sock *free_list; /* linked through ->ag */

struct ivs_sock *ivs_fd_lookup(int fd)
{
	struct chunk *c;

	if (__builtin_expect((unsigned)fd >= TOP_SIZE * CHUNK_SIZE, 0))
		return NULL;
	c = atomic_load_explicit(&top[(unsigned)fd >> CHUNK_SHIFT], memory_order_acquire);
	if (__builtin_expect(!c, 1))
		return NULL;
	return atomic_load_explicit(&c->e[(unsigned)fd & (CHUNK_SIZE - 1)], memory_order_acquire);
}

struct ivs_sock *ivs_fd_get(int fd)
{
	struct ivs_sock *s = ivs_fd_lookup(fd);

	if (!s)
		return NULL;
	atomic_fetch_add(&s->refs, 1);
	/* Still installed? (it may have been closed and recycled meanwhile) */
	if (ivs_fd_lookup(fd) != s) {
		ivs_sock_put(s);
		return NULL;
	}
	return s;
}

int ivs_fd_install(int fd, struct ivs_sock *s)
{
	struct chunk *c, *nc;
	unsigned t = (unsigned)fd >> CHUNK_SHIFT;
	struct ivs_sock *old;

	if (fd < 0 || (unsigned)fd >= TOP_SIZE * CHUNK_SIZE)
		return -EMFILE;
	c = atomic_load_explicit(&top[t], memory_order_acquire);
	if (!c) {
		nc = calloc(1, sizeof(*nc));
		if (!nc)
			return -ENOMEM;
		c = NULL;
		if (atomic_compare_exchange_strong(&top[t], &c, nc))
			c = nc;
		else
			free(nc);
	}
	atomic_fetch_add(&s->refs, 1);
	atomic_fetch_add(&s->nfds, 1);
	old = atomic_exchange(&c->e[(unsigned)fd & (CHUNK_SIZE - 1)], s);
	if (old) { /* the kernel reused an fd we missed a close of */
		atomic_fetch_sub(&old->nfds, 1);
		ivs_sock_put(old);
	}
	return 0;
}

struct ivs_sock *ivs_fd_remove(int fd)
{
	struct chunk *c;

	if ((unsigned)fd >= TOP_SIZE * CHUNK_SIZE)
		return NULL;
	c = atomic_load_explicit(&top[(unsigned)fd >> CHUNK_SHIFT], memory_order_acquire);
	if (!c)
		return NULL;
	return atomic_exchange(&c->e[(unsigned)fd & (CHUNK_SIZE - 1)], NULL);
}

void ivs_fd_foreach(void (*fn)(int fd, struct ivs_sock *s, void *arg), void *arg)
{
	for (unsigned t = 0; t < TOP_SIZE; t++) {
		struct chunk *c = atomic_load(&top[t]);

		if (!c)
			continue;
		for (unsigned i = 0; i < CHUNK_SIZE; i++) {
			struct ivs_sock *s = atomic_load(&c->e[i]);

			if (s)
				fn((int)(t * CHUNK_SIZE + i), s, arg);
		}
	}
}

struct ivs_sock *ivs_sock_new(int kind, struct ivs_agent *ag)
{
	struct ivs_sock *s;

	pthread_mutex_lock(&free_lock);
	s = free_list;
	if (s)
		free_list = (struct ivs_sock *)s->ag;
	pthread_mutex_unlock(&free_lock);
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return NULL;
	} else {
		/* refs and alive survive: a racing stale get may hold a ref */
		size_t keep = offsetof(struct ivs_sock, kind);

		memset((char *)s + keep, 0, sizeof(*s) - keep);
	}
	atomic_store(&s->alive, 1);
	atomic_fetch_add(&s->refs, 1);
	s->kind = kind;
	s->ag = ag;
	s->fork_gen = atomic_load(&ivs_fork_gen);
	s->held_gen = s->fork_gen;
	s->kfd = -1;
	pthread_mutex_init(&s->rx_lock, NULL);
	pthread_mutex_init(&s->tx_lock, NULL);
	return s;
}

void ivs_sock_free(struct ivs_sock *s)
{
	pthread_mutex_destroy(&s->rx_lock);
	pthread_mutex_destroy(&s->tx_lock);
	pthread_mutex_lock(&free_lock);
	s->ag = (struct ivs_agent *)free_list;
	free_list = s;
	pthread_mutex_unlock(&free_lock);
}

/* ---- shim.h ---- */

struct ivs_sock *ivs_sock_get(int fd)
{
	struct ivs_sock *s;

	if (__builtin_expect(!ivs_fd_lookup(fd), 1))
		return NULL;
	s = ivs_fd_get(fd);
	if (!s)
		return NULL;
	if (s->kind != IVS_CONN || atomic_load(&s->state) == IVS_ST_PLAIN) {
		ivs_sock_put(s);
		return NULL;
	}
	return s;
}

void ivs_sock_put(struct ivs_sock *s)
{
	if (s && atomic_fetch_sub(&s->refs, 1) == 1 && atomic_exchange(&s->alive, 0) == 1)
		ivs_sock_free(s);
}

int ivs_sock_nfds(struct ivs_sock *s)
{
	return atomic_load(&s->nfds);
}

void ivs_table_atfork_child(void)
{
	pthread_mutex_init(&free_lock, NULL);
}
