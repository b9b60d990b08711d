// SPDX-License-Identifier: MIT
/* SA_RESTART for accelerated sockets: a kernel recv/send interrupted by a
 * handler installed with SA_RESTART is restarted, but the shim sleeps in
 * poll(), which never is. sigaction()/signal() are interposed to wrap each
 * handler in a trampoline that records, per thread, whether a non-restart
 * handler ran; the data path then restarts or fails with EINTR like TCP. */
#include <errno.h>
#include <signal.h>
#include <string.h>

#include "sock_int.h"

struct user_handler {
	void (*sa)(int, siginfo_t *, void *); /* SA_SIGINFO handler */
	void (*h)(int);                        /* plain handler */
	int flags;
	_Atomic int wrapped;
};

static struct user_handler users[_NSIG];
static __thread unsigned tl_sigs, tl_sigs_norestart;

static void trampoline(int sig, siginfo_t *si, void *uc)
{
	struct user_handler *u = &users[sig];
	int flags = u->flags;

	tl_sigs++;
	if (!(flags & SA_RESTART))
		tl_sigs_norestart++;
	if ((flags & SA_SIGINFO) && u->sa)
		u->sa(sig, si, uc);
	else if (!(flags & SA_SIGINFO) && u->h)
		u->h(sig);
}

static bool wrappable(int sig, const struct sigaction *act)
{
	return act && sig > 0 && sig < _NSIG && sig != SIGKILL && sig != SIGSTOP &&
	       act->sa_handler != SIG_DFL && act->sa_handler != SIG_IGN;
}

IVS_EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *oact)
{
	struct sigaction mine;
	int was, rc;

	ivs_init();
	if (sig <= 0 || sig >= _NSIG || (ivs_cfg.disabled && !atomic_load(&users[sig].wrapped)))
		return ivs_rc.sigaction(sig, act, oact);
	was = atomic_load(&users[sig].wrapped);
	if (!wrappable(sig, act)) {
		rc = ivs_rc.sigaction(sig, act, oact);
		if (rc == 0 && act)
			atomic_store(&users[sig].wrapped, 0);
	} else {
		struct user_handler old = users[sig];

		mine = *act;
		mine.sa_flags |= SA_SIGINFO;
		mine.sa_sigaction = trampoline;
		users[sig].sa = (act->sa_flags & SA_SIGINFO) ? act->sa_sigaction : NULL;
		users[sig].h = (act->sa_flags & SA_SIGINFO) ? NULL : act->sa_handler;
		users[sig].flags = act->sa_flags;
		rc = ivs_rc.sigaction(sig, &mine, oact);
		if (rc < 0) {
			users[sig] = old;
			return rc;
		}
		atomic_store(&users[sig].wrapped, 1);
		if (oact && was && oact->sa_sigaction == trampoline) {
			oact->sa_flags = old.flags;
			if (old.flags & SA_SIGINFO)
				oact->sa_sigaction = old.sa;
			else
				oact->sa_handler = old.h;
		}
		return rc;
	}
	if (rc == 0 && oact && was && oact->sa_sigaction == trampoline) {
		/* report what the program installed, not our trampoline */
		struct user_handler *u = &users[sig];

		oact->sa_flags = u->flags;
		if (u->flags & SA_SIGINFO)
			oact->sa_sigaction = u->sa;
		else
			oact->sa_handler = u->h;
	}
	return rc;
}

IVS_EXPORT sighandler_t signal(int sig, sighandler_t h)
{
	struct sigaction act, old;

	memset(&act, 0, sizeof(act));
	act.sa_handler = h;
	act.sa_flags = SA_RESTART; /* glibc's BSD semantics */
	sigemptyset(&act.sa_mask);
	sigaddset(&act.sa_mask, sig > 0 && sig < _NSIG ? sig : SIGUSR1);
	if (sigaction(sig, &act, &old) < 0)
		return SIG_ERR;
	return old.sa_handler;
}

void ivs_sig_mark(struct ivs_sigmark *m)
{
	m->all = tl_sigs;
	m->norestart = tl_sigs_norestart;
}

unsigned ivs_sig_count(void)
{
	return tl_sigs;
}

bool ivs_sig_ran(const struct ivs_sigmark *m)
{
	return tl_sigs != m->all;
}

bool ivs_sig_restartable(const struct ivs_sigmark *m)
{
	/* Some handler ran since the mark, and every one of them asked for
	 * SA_RESTART (an unknown interruption counts as not restartable). */
	return tl_sigs != m->all && tl_sigs_norestart == m->norestart;
}
