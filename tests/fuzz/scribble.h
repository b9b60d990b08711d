/* SPDX-License-Identifier: MIT */
/*
 * Concurrent-mode helpers for the *_race harnesses: a scribbler thread that
 * rewrites shared words WHILE the code under test runs (so time-of-check /
 * time-of-use bugs can show), a watchdog that fails when one call does not
 * return (a harness-side cap on every loop of the code under test), and
 * memory with guard pages for the shared region.
 *
 * The scribbler is driven by the fuzz input: which words (an index into a
 * list the harness registers), which values (a xorshift generator seeded
 * from the input, plus "interesting" values and small steps from the
 * current one) and how often (a pause between writes). Timing between the
 * two threads is not reproducible, the sequence of writes is: a crashing
 * input re-run a few hundred times (-runs=N) reproduces a real race. A pause
 * byte of 255 starts no thread: harnesses then apply only their
 * deterministic scrib_poke() operations (exact reproducers).
 *
 * Invariants that today's code is known to break (findings being fixed
 * elsewhere) are checked with FUZZ_CHECK(id, cond): if id is in the comma
 * list IVSOCK_FUZZ_XFAIL (default: the harness's own list), a violation is
 * reported once on stderr and the run goes on; otherwise it aborts. Run with
 * IVSOCK_FUZZ_XFAIL= (empty) to make every check fatal.
 */
#ifndef IVSOCK_FUZZ_SCRIBBLE_H
#define IVSOCK_FUZZ_SCRIBBLE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>

#include "fuzz.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#include <sanitizer/asan_interface.h>
#define FUZZ_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define FUZZ_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#endif
#endif
#ifndef FUZZ_POISON
#define FUZZ_POISON(p, n) ((void)(p), (void)(n))
#define FUZZ_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* ---------------- guarded memory ---------------- */

/*
 * size bytes ending exactly at a PROT_NONE page, with a PROT_NONE page
 * before the (page-rounded) block; the slack between the lower guard and
 * the block is ASan-poisoned. Any access outside [p, p+size) faults or is
 * reported. Returns the block, zeroed. Never freed (harnesses keep one).
 */
static inline void *fuzz_guarded_alloc(size_t size)
{
	size_t pg = 4096, span = (size + pg - 1) / pg * pg;
	uint8_t *m = mmap(NULL, span + 2 * pg, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *p;

	FUZZ_ASSERT(m != MAP_FAILED);
	FUZZ_ASSERT(mprotect(m + pg, span, PROT_READ | PROT_WRITE) == 0);
	p = m + pg + span - size;
	if (p != m + pg)
		FUZZ_POISON(m + pg, (size_t)(p - (m + pg)));
	return p;
}

/* ---------------- known-failure gating ---------------- */

static inline bool fuzz_xfail(const char *id, const char *dflt)
{
	const char *l = getenv("IVSOCK_FUZZ_XFAIL");
	size_t n = strlen(id);

	if (!l)
		l = dflt;
	while (l && *l) {
		const char *e = strchr(l, ',');
		size_t k = e ? (size_t)(e - l) : strlen(l);

		if (k == n && !memcmp(l, id, n))
			return true;
		l = e ? e + 1 : NULL;
	}
	return false;
}

#ifndef FUZZ_XFAIL_DEFAULT
#define FUZZ_XFAIL_DEFAULT ""
#endif

#define FUZZ_CHECK(id, cond)                                                          \
	do {                                                                          \
		if (!(cond)) {                                                        \
			static int told_;                                             \
			if (!fuzz_xfail((id), FUZZ_XFAIL_DEFAULT)) {                  \
				fprintf(stderr, "%s:%d: fuzz invariant failed [%s]: %s\n", \
					__FILE__, __LINE__, (id), #cond);             \
				abort();                                              \
			}                                                             \
			if (!told_++)                                                 \
				fprintf(stderr, "%s:%d: known failure [%s] (xfail): %s\n", \
					__FILE__, __LINE__, (id), #cond);             \
		}                                                                     \
	} while (0)

/* ---------------- watchdog ---------------- */

static _Atomic uint64_t fuzz_wd_since;      /* ns when the current call began, 0 idle */
static const char *_Atomic fuzz_wd_what;
static pthread_once_t fuzz_wd_once = PTHREAD_ONCE_INIT;

static inline uint64_t fuzz_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void *fuzz_wd_main(void *arg)
{
	const char *e = getenv("IVSOCK_FUZZ_WATCHDOG_MS");
	uint64_t limit = (e ? strtoull(e, NULL, 10) : 3000) * 1000000ULL;

	(void)arg;
	for (;;) {
		struct timespec ts = { 0, 50 * 1000000 };
		uint64_t since;

		nanosleep(&ts, NULL);
		since = atomic_load(&fuzz_wd_since);
		if (since && fuzz_now_ns() - since > limit) {
			fprintf(stderr, "fuzz invariant failed [bounded]: %s did not return "
				"within %llu ms (a loop the peer controls?)\n",
				atomic_load(&fuzz_wd_what),
				(unsigned long long)(limit / 1000000));
			abort();
		}
	}
	return NULL;
}

static void fuzz_wd_start(void)
{
	pthread_t t;

	FUZZ_ASSERT(pthread_create(&t, NULL, fuzz_wd_main, NULL) == 0);
	pthread_detach(t);
}

/* Bracket every call of the code under test: WD(expr) evaluates expr with
 * the watchdog armed. */
static inline void fuzz_wd_arm(const char *what)
{
	pthread_once(&fuzz_wd_once, fuzz_wd_start);
	atomic_store(&fuzz_wd_what, what);
	atomic_store(&fuzz_wd_since, fuzz_now_ns());
}

static inline void fuzz_wd_disarm(void)
{
	atomic_store(&fuzz_wd_since, 0);
}

#define WD(expr) ({ fuzz_wd_arm(#expr); __typeof__(expr) r_ = (expr); fuzz_wd_disarm(); r_; })
#define WDV(stmt) do { fuzz_wd_arm(#stmt); stmt; fuzz_wd_disarm(); } while (0)

/* ---------------- scribbler ---------------- */

#define SCRIB_MAX_WORDS 512
#define SCRIB_MAX_SCRIPT 64

struct scrib_word {
	void *p;
	uint8_t width;  /* 1, 2, 4 or 8 */
	uint32_t near;  /* an "interesting" value for this word (e.g. ring size) */
};

struct scribbler {
	struct scrib_word w[SCRIB_MAX_WORDS];
	unsigned nw;
	uint8_t script[SCRIB_MAX_SCRIPT];
	unsigned nscript;
	uint64_t rng;
	uint32_t pause;          /* cpu_relax iterations between writes */
	pthread_t th;
	_Atomic int run;         /* 1 while scribbling */
	_Atomic int hold;        /* 1: stop writing (quiescent check) */
	_Atomic int held;        /* scribbler acknowledges hold */
	_Atomic unsigned long writes;
	bool off;
};

static inline void scrib_init(struct scribbler *s)
{
	memset(s, 0, sizeof(*s));
}

static inline void scrib_add(struct scribbler *s, void *p, uint8_t width, uint32_t near)
{
	if (s->nw < SCRIB_MAX_WORDS)
		s->w[s->nw++] = (struct scrib_word){ p, width, near };
}

/* Take the scribbler's script from the input: seed, pause, and up to
 * SCRIB_MAX_SCRIPT steps. */
static inline void scrib_from_input(struct scribbler *s, struct fuzz_in *in)
{
	size_t got;
	const uint8_t *p;

	s->rng = (uint64_t)fuzz_u32(in) << 1 | 1;
	s->pause = fuzz_u8(in);
	s->off = s->pause == 255; /* no thread: deterministic scrib_poke() only */
	s->pause = s->pause < 128 ? s->pause : (s->pause - 127) * 64;
	s->nscript = fuzz_u8(in) % SCRIB_MAX_SCRIPT + 1;
	p = fuzz_bytes(in, s->nscript, &got);
	memcpy(s->script, p, got);
	if (got < s->nscript)
		memset(s->script + got, 0, s->nscript - got);
}

static inline uint64_t scrib_next(struct scribbler *s)
{
	s->rng ^= s->rng << 13;
	s->rng ^= s->rng >> 7;
	s->rng ^= s->rng << 17;
	return s->rng;
}

static inline uint64_t scrib_load(const struct scrib_word *w)
{
	switch (w->width) {
	case 1: return __atomic_load_n((uint8_t *)w->p, __ATOMIC_RELAXED);
	case 2: return __atomic_load_n((uint16_t *)w->p, __ATOMIC_RELAXED);
	case 4: return __atomic_load_n((uint32_t *)w->p, __ATOMIC_RELAXED);
	default: return __atomic_load_n((uint64_t *)w->p, __ATOMIC_RELAXED);
	}
}

static inline void scrib_store(const struct scrib_word *w, uint64_t v)
{
	switch (w->width) {
	case 1: __atomic_store_n((uint8_t *)w->p, (uint8_t)v, __ATOMIC_RELEASE); break;
	case 2: __atomic_store_n((uint16_t *)w->p, (uint16_t)v, __ATOMIC_RELEASE); break;
	case 4: __atomic_store_n((uint32_t *)w->p, (uint32_t)v, __ATOMIC_RELEASE); break;
	default: __atomic_store_n((uint64_t *)w->p, v, __ATOMIC_RELEASE); break;
	}
}

/* One step: script byte b picks the word (with the generator) and the kind
 * of value. */
static inline void scrib_step(struct scribbler *s, uint8_t b)
{
	uint64_t r = scrib_next(s);
	const struct scrib_word *w = &s->w[(b + (r >> 40)) % s->nw];
	uint64_t cur = scrib_load(w);

	switch ((b >> 5) & 7) {
	case 0: scrib_store(w, r); break;                           /* anything */
	case 1: scrib_store(w, cur + 1 + (r & 0x3f)); break;        /* small step forward */
	case 2: scrib_store(w, cur - 1 - (r & 0x3f)); break;        /* small step back */
	case 3: scrib_store(w, cur ^ (1ULL << (r % (w->width * 8)))); break; /* one bit */
	case 4: scrib_store(w, w->near + (r & 3) - 1); break;       /* near the interesting value */
	case 5: scrib_store(w, (r & 1) ? 0 : ~0ULL); break;
	case 6: scrib_store(w, cur + w->near); break;               /* a whole ring ahead */
	default:                                                    /* flip back and forth */
		scrib_store(w, r);
		scrib_store(w, cur);
		break;
	}
	atomic_fetch_add_explicit(&s->writes, 1, memory_order_relaxed);
}

static void *scrib_main(void *arg)
{
	struct scribbler *s = arg;
	unsigned i = 0;

	while (atomic_load_explicit(&s->run, memory_order_acquire)) {
		if (atomic_load_explicit(&s->hold, memory_order_acquire)) {
			atomic_store(&s->held, 1);
			while (atomic_load(&s->hold) && atomic_load(&s->run))
				__builtin_ia32_pause();
			atomic_store(&s->held, 0);
			continue;
		}
		scrib_step(s, s->script[i++ % s->nscript]);
		for (uint32_t k = 0; k < s->pause; k++)
			__builtin_ia32_pause();
	}
	return NULL;
}

static inline void scrib_start(struct scribbler *s)
{
	if (!s->nw || !s->nscript || s->off)
		return;
	atomic_store(&s->run, 1);
	FUZZ_ASSERT(pthread_create(&s->th, NULL, scrib_main, s) == 0);
}

static inline void scrib_stop(struct scribbler *s)
{
	if (!atomic_load(&s->run))
		return;
	atomic_store(&s->run, 0);
	pthread_join(s->th, NULL);
}

/* Deterministic write from the harness thread (scribbler held or off):
 * word w % nw gets value v. Reproducers are built from these. */
static inline void scrib_poke(struct scribbler *s, uint8_t w, uint64_t v)
{
	if (s->nw)
		scrib_store(&s->w[w % s->nw], v);
}

/* Stop writing until scrib_release(): for checks that need a still peer. */
static inline void scrib_hold(struct scribbler *s)
{
	if (!atomic_load(&s->run))
		return;
	atomic_store(&s->hold, 1);
	while (!atomic_load(&s->held))
		__builtin_ia32_pause();
}

static inline void scrib_release(struct scribbler *s)
{
	atomic_store(&s->hold, 0);
}

#endif
