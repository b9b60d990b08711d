// SPDX-License-Identifier: MIT
/* Accelerated sockets across execve(): the exec family is interposed; before
 * the new image replaces us, sockets still waiting for their acceptor fall
 * back to TCP, and the fd -> channel map of the connected ones (and of
 * registered listeners) goes into IVSOCK_INHERIT together with our agent
 * sockets, kept open so the ends' owner survives. The new image's shim
 * re-attaches them in its constructor. */
#include <alloca.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "ivsock/slot.h"
#include "sock_int.h"

#define INHERIT_VAR "IVSOCK_INHERIT"
#define INHERIT_MAX 8192

extern char **environ;

struct exec_walk {
	char *buf;
	size_t len;
	int n;
	bool any;
	int drop[64];       /* close-on-exec accelerated fds, kept open for it */
	int ndrop;
};

/* The fds prepare() made survive the exec, restored by undo(). */
static __thread int exec_drop[64];
static __thread int exec_ndrop;

static void add(struct exec_walk *w, const char *fmt, ...)
{
	va_list ap;
	int k;

	if (w->len >= INHERIT_MAX)
		return;
	va_start(ap, fmt);
	k = vsnprintf(w->buf + w->len, INHERIT_MAX - w->len, fmt, ap);
	va_end(ap);
	if (k > 0 && w->len + (size_t)k < INHERIT_MAX)
		w->len += (size_t)k;
	else
		w->len = INHERIT_MAX; /* too many: the rest stays unknown */
}

static void collect(int fd, struct ivs_sock *s, void *arg)
{
	struct exec_walk *w = arg;
	int fdfl = ivs_rc.fcntl(fd, F_GETFD);
	bool keep = fdfl >= 0 && !(fdfl & FD_CLOEXEC);

	if (s->kind == IVS_LISTENER) {
		if (keep)
			add(w, "L%d,%u,%u;", fd, s->lidx, s->lgen);
		return;
	}
	if (atomic_load(&s->state) == IVS_ST_OFFERED)
		ivs_conn_fallback(s, fd, IVS_C_FB_TIMEOUT);
	if (atomic_load(&s->state) != IVS_ST_CONNECTED || atomic_load(&s->closed))
		return;
	pthread_mutex_lock(&s->tx_lock);
	ivs_conn_flush_counts(s, true);
	pthread_mutex_unlock(&s->tx_lock);
	/* a close-on-exec fd goes away with the exec: the new image drops
	 * its hold on the end unless another inherited fd refers to it. It
	 * needs the socket to prove to the agent that it may: the fd stays
	 * open across the exec and the new image closes it before main(). */
	add(w, "%c%d,%u,%u,%d;", keep ? 'C' : 'D', fd, s->v.idx, s->v.gen, s->v.side);
	if (!keep && w->ndrop < (int)(sizeof(w->drop) / sizeof(w->drop[0])))
		w->drop[w->ndrop++] = fd;
	w->any = true;
}

/* Agent sockets of earlier images, inherited through exec and held for
 * the ends they own (moved high and guarded like every shim fd). */
#define INHERITED_MAX 6
static int inherited[INHERITED_MAX];
static int ninherited;

/* Agent sockets the new image must hold (owners of the ends). */
static int keep_agents(int *fds, int max)
{
	extern struct ivs_agent *ivs_agent_peek(int which);
	int n = 0;

	for (int i = 0; i < 2 && n < max; i++) {
		struct ivs_agent *ag = ivs_agent_peek(i);

		if (ag && ag->conn.sock >= 0)
			fds[n++] = ag->conn.sock;
	}
	for (int i = 0; i < ninherited && n < max; i++)
		if (inherited[i] >= 0 && ivs_fdguard_verify(inherited[i]))
			fds[n++] = inherited[i];
	return n;
}

/* Build "IVSOCK_INHERIT=..." or NULL (nothing to hand over). */
static char *prepare(int *agents, int *nagents)
{
	struct exec_walk w = { 0 };
	char *var;

	*nagents = 0;
	ivs_init();
	if (ivs_cfg.disabled)
		return NULL;
	w.buf = malloc(INHERIT_MAX + 64);
	if (!w.buf)
		return NULL;
	w.buf[0] = '\0';
	ivs_fd_foreach(collect, &w);
	if (!w.any) {
		free(w.buf);
		return NULL;
	}
	*nagents = keep_agents(agents, 2 + INHERITED_MAX);
	var = malloc(w.len + 128);
	if (!var) {
		free(w.buf);
		return NULL;
	}
	{
		size_t k = (size_t)snprintf(var, w.len + 128, INHERIT_VAR "=A%d,%d",
					    *nagents > 0 ? agents[0] : -1,
					    *nagents > 1 ? agents[1] : -1);

		for (int i = 2; i < *nagents; i++)
			k += (size_t)snprintf(var + k, w.len + 128 - k, ",%d", agents[i]);
		snprintf(var + k, w.len + 128 - k, ";%s", w.buf);
	}
	free(w.buf);
	exec_ndrop = 0;
	for (int i = 0; i < w.ndrop; i++)
		if (ivs_rc.fcntl(w.drop[i], F_SETFD, 0) == 0)
			exec_drop[exec_ndrop++] = w.drop[i];
	for (int i = 0; i < *nagents; i++) {
		int fl = ivs_rc.fcntl(agents[i], F_GETFD);

		if (fl >= 0)
			ivs_rc.fcntl(agents[i], F_SETFD, fl & ~FD_CLOEXEC);
	}
	return var;
}

static void undo(char *var, const int *agents, int nagents)
{
	for (int i = 0; i < exec_ndrop; i++)
		ivs_rc.fcntl(exec_drop[i], F_SETFD, FD_CLOEXEC);
	exec_ndrop = 0;
	for (int i = 0; i < nagents; i++) {
		int fl = ivs_rc.fcntl(agents[i], F_GETFD);

		if (fl >= 0)
			ivs_rc.fcntl(agents[i], F_SETFD, fl | FD_CLOEXEC);
	}
	free(var);
}

/* envp plus var (replacing an old IVSOCK_INHERIT). */
static char **env_with(char *const envp[], char *var)
{
	size_t n = 0, k = 0;
	char **e;

	while (envp && envp[n])
		n++;
	e = malloc((n + 2) * sizeof(*e));
	if (!e)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (strncmp(envp[i], INHERIT_VAR "=", sizeof(INHERIT_VAR)))
			e[k++] = envp[i];
	e[k++] = var;
	e[k] = NULL;
	return e;
}

IVS_EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	int agents[2 + INHERITED_MAX], nag, rc, err;
	char *var = prepare(agents, &nag);
	char **e;

	if (!var)
		return ivs_rc.execve(path, argv, envp);
	e = env_with(envp, var);
	rc = ivs_rc.execve(path, argv, e ? e : (char **)envp);
	err = errno;
	free(e);
	undo(var, agents, nag);
	errno = err;
	return rc;
}

IVS_EXPORT int execv(const char *path, char *const argv[])
{
	return execve(path, argv, environ);
}

IVS_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
	static int (*real_execvpe)(const char *, char *const[], char *const[]);
	int agents[2 + INHERITED_MAX], nag, rc, err;
	char *var;
	char **e;

	ivs_init();
	if (!real_execvpe)
		real_execvpe = (int (*)(const char *, char *const[], char *const[]))
			dlsym(RTLD_NEXT, "execvpe");
	if (!real_execvpe)
		return ivs_set_errno(-ENOSYS);
	var = prepare(agents, &nag);
	if (!var)
		return real_execvpe(file, argv, envp);
	e = env_with(envp, var);
	rc = real_execvpe(file, argv, e ? e : (char **)envp);
	err = errno;
	free(e);
	undo(var, agents, nag);
	errno = err;
	return rc;
}

IVS_EXPORT int execvp(const char *file, char *const argv[])
{
	return execvpe(file, argv, environ);
}

/* execl, execlp, execle: collect the variadic argv. */
#define COLLECT_ARGS(arg0, ap, argv)						\
	do {									\
		size_t n_ = 1;							\
		va_list c_;							\
		va_copy(c_, ap);						\
		while (va_arg(c_, char *))					\
			n_++;							\
		va_end(c_);							\
		argv = alloca((n_ + 1) * sizeof(char *));			\
		argv[0] = (char *)(arg0);					\
		for (size_t i_ = 1; i_ <= n_; i_++)				\
			argv[i_] = va_arg(ap, char *);				\
	} while (0)

IVS_EXPORT int execl(const char *path, const char *arg, ...)
{
	char **argv;
	va_list ap;

	va_start(ap, arg);
	COLLECT_ARGS(arg, ap, argv);
	va_end(ap);
	return execve(path, argv, environ);
}

IVS_EXPORT int execlp(const char *file, const char *arg, ...)
{
	char **argv;
	va_list ap;

	va_start(ap, arg);
	COLLECT_ARGS(arg, ap, argv);
	va_end(ap);
	return execvpe(file, argv, environ);
}

IVS_EXPORT int execle(const char *path, const char *arg, ...)
{
	char **argv, **envp;
	va_list ap;

	va_start(ap, arg);
	COLLECT_ARGS(arg, ap, argv);
	envp = va_arg(ap, char **);
	va_end(ap);
	return execve(path, argv, envp);
}

/* ---- the new image ---- */

/* Sockets adopted so far in this image (dup'd fds share one). */
struct adopted {
	struct ivs_sock *s[64];
	int n;
};

static void adopt_conn(struct ivs_agent *ag, int fd, uint32_t idx, uint32_t gen, int side,
		       bool drop, struct adopted *ad)
{
	struct ivsock_region *rg = ag->rg;
	struct ivsock_ag_chan r;
	struct ivs_sock *s;
	int fl, wfd = -1;

	if (idx >= rg->channel_cap || (side != 0 && side != 1) ||
	    ivsock_chan_state(rg, idx, gen) != IVSOCK_CHAN_CONNECTED)
		return;
	for (int i = 0; i < ad->n; i++)
		if (ad->s[i]->v.idx == idx && ad->s[i]->v.gen == gen) {
			if (!drop)
				ivs_fd_install(fd, ad->s[i]);
			return;
		}
	/* A window of our own, granted on proof that we hold the socket. */
	if (ivsock_agent_attach(&ag->conn, fd, idx, gen, side, &r, &wfd) < 0)
		return;
	s = ivs_sock_new(IVS_CONN, ag);
	if (!s) {
		if (wfd >= 0)
			ivs_real.close(wfd);
		return;
	}
	if (ivsock_agent_map_block(&ag->conn, &r, wfd, &s->map) < 0 ||
	    ivsock_chan_view_block(&s->v, s->map.base, r.ring_size, side, idx, gen) < 0) {
		ivsock_agent_unmap_block(&s->map);
		if (wfd >= 0)
			ivs_real.close(wfd);
		ivs_sock_put(s);
		return;
	}
	s->winfd = wfd;
	if (wfd >= 0)
		ivs_fdguard_ref(wfd, &s->winfd);
	if (drop) {
		/* the fd was close-on-exec: this process's hold ends here */
		if (atomic_fetch_sub(&s->v.my_ctl->holders, 1) <= 1) {
			ivsock_chan_end_close_rings(&s->v, false);
			ivs_ring_peer(s);
			ivsock_agent_close_end(&ag->conn, fd, idx, gen, side, false);
		}
		ivs_conn_detach(s);
		ivs_sock_put(s);
		return;
	}
	s->kfd = fd;
	s->shared = true; /* re-read indices, take the doorbell on first use */
	s->inherited = true;
	/* a channel opened for a connection already on TCP (sock_promote.c):
	 * which of its directions are still on TCP, from the shared words
	 * (prx clears itself once the kernel's count is at the peer's
	 * tx_start) */
	if (ivsock_load_acquire(&s->v.my_ctl->rx_ready)) {
		s->ring_tx_done = ivsock_load_relaxed(&s->v.my_ctl->ring_tx_before);
		s->ring_rx_done = ivsock_load_relaxed(&s->v.my_ctl->ring_rx_before);
		atomic_store(&s->ptx, !(ivsock_load_acquire(&s->v.my_ctl->tx_start) & IVSOCK_START_RING) &&
				      !(ivsock_load_acquire(&s->v.my_ctl->tx_switch) & IVSOCK_SWITCH_TCP));
		atomic_store(&s->prx, 1);
	}
	atomic_store(&s->state, IVS_ST_CONNECTED);
	fl = ivs_rc.fcntl(fd, F_GETFL);
	atomic_store(&s->nonblock, fl >= 0 && (fl & O_NONBLOCK));
	if (ivs_fd_install(fd, s) == 0) {
		ivs_debug("fd %d: channel %u inherited across exec", fd, idx);
		if (ad->n < 64) {
			ad->s[ad->n++] = s; /* keeps our reference until the end */
			return;
		}
	}
	ivs_sock_put(s);
}

/* Does the list hold a C entry for channel (idx, gen)? */
static bool seen_conn(const char *list, unsigned idx, unsigned gen)
{
	for (const char *p = list; (p = strchr(p, 'C')); p++) {
		unsigned a, b;
		int fd;

		if ((p == list || p[-1] == ';') && sscanf(p + 1, "%d,%u,%u", &fd, &a, &b) == 3 &&
		    a == idx && b == gen)
			return true;
	}
	return false;
}

/* Is there a D entry for (idx, gen) before position pos? */
static bool seen_drop(const char *list, const char *pos, unsigned idx, unsigned gen)
{
	for (const char *p = list; (p = strchr(p, 'D')) && p < pos; p++) {
		unsigned a, b;
		int fd;

		if ((p == list || p[-1] == ';') && sscanf(p + 1, "%d,%u,%u", &fd, &a, &b) == 3 &&
		    a == idx && b == gen)
			return true;
	}
	return false;
}

/* "A<fd>,<fd>,...": agent sockets owning ends we now hold: keep them open,
 * out of the program's way, close-on-exec (passed on explicitly). */
static void hold_agents(const char *list)
{
	char *end;

	while (*list && ninherited < INHERITED_MAX) {
		long fd = strtol(list, &end, 10);
		struct stat st;

		if (end == list)
			break;
		if (fd >= 0 && fd < (1 << 22) && fstat((int)fd, &st) == 0 && S_ISSOCK(st.st_mode)) {
			int nfd = ivs_fdguard_take((int)fd, &inherited[ninherited]);

			ivs_rc.fcntl(nfd, F_SETFD, FD_CLOEXEC);
			ivs_fdguard_ident(nfd);
			ninherited++;
		}
		list = *end == ',' ? end + 1 : end;
		if (*end != ',')
			break;
	}
}

__attribute__((constructor)) static void exec_inherit(void)
{
	const char *env = getenv(INHERIT_VAR);
	struct ivs_agent *ag;
	char *copy, *orig, *tok, *save = NULL;
	struct adopted ad = { .n = 0 };

	if (!env)
		return;
	ivs_init();
	copy = strdup(env);
	orig = strdup(env);
	unsetenv(INHERIT_VAR);
	if (!copy || !orig || ivs_cfg.disabled)
		goto out;
	ag = ivs_agent_get();
	if (!ag) {
		ivs_log(IVS_LOG_WARN, "inherited accelerated sockets but no agent: they are lost");
		goto out;
	}
	for (tok = strtok_r(copy, ";", &save); tok; tok = strtok_r(NULL, ";", &save)) {
		unsigned a, b;
		int fd, side;

		if ((tok[0] == 'C' || tok[0] == 'D') &&
		    sscanf(tok + 1, "%d,%u,%u,%d", &fd, &a, &b, &side) == 4 && fd >= 0) {
			/* one hold per channel: drop it only if no fd of the
			 * channel came through, and only once */
			if (tok[0] == 'D' && (seen_conn(orig, a, b) ||
					      seen_drop(orig, orig + (tok - copy), a, b)))
				continue;
			adopt_conn(ag, fd, a, b, side, tok[0] == 'D', &ad);
		} else if (tok[0] == 'L' && sscanf(tok + 1, "%d,%u,%u", &fd, &a, &b) == 3 && fd >= 0) {
			struct ivs_sock *s = ivs_sock_new(IVS_LISTENER, ag);

			if (!s)
				continue;
			s->lidx = a;
			s->lgen = b;
			s->lshared = true; /* registered under the old image's client */
			s->kfd = fd;
			ivs_fd_install(fd, s);
			ivs_sock_put(s);
		}
		else if (tok[0] == 'A')
			hold_agents(tok + 1);
	}
	for (int i = 0; i < ad.n; i++)
		ivs_sock_put(ad.s[i]);
	/* doorbells and this thread's eventfd now, before the new image
	 * can sandbox itself (seccomp without socket()/eventfd()) */
	ivs_agent_prepare();
out:
	/* the close-on-exec fds kept open for the agent close now, before
	 * the program runs (they were its, but are not in this image) */
	for (const char *p = orig; p && (p = strchr(p, 'D')); p++) {
		int fd;

		if ((p == orig || p[-1] == ';') && sscanf(p + 1, "%d,", &fd) == 1 && fd >= 0 &&
		    !ivs_fd_lookup(fd))
			ivs_real.close(fd);
	}
	free(copy);
	free(orig);
}
