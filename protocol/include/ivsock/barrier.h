/* SPDX-License-Identifier: MIT */
/*
 * Memory-ordering primitives for memory shared between processes and VMs.
 * Everything goes through <stdatomic.h>; every call site names the barrier it
 * pairs with. No volatile anywhere.
 */
#ifndef IVSOCK_BARRIER_H
#define IVSOCK_BARRIER_H

#include <stdatomic.h>
#include <stdint.h>

/* Shared words are declared with these types so that a plain access cannot
 * happen by accident. */
typedef _Atomic uint32_t ivsock_a32;
typedef _Atomic uint64_t ivsock_a64;

#define ivsock_load_relaxed(p)     atomic_load_explicit((p), memory_order_relaxed)
#define ivsock_load_acquire(p)     atomic_load_explicit((p), memory_order_acquire)
#define ivsock_store_relaxed(p, v) atomic_store_explicit((p), (v), memory_order_relaxed)
#define ivsock_store_release(p, v) atomic_store_explicit((p), (v), memory_order_release)
#define ivsock_smp_mb()            atomic_thread_fence(memory_order_seq_cst)

/* Strong CAS with acq_rel on success: used for slot claims and state moves. */
#define ivsock_cas(p, expp, desired) \
	atomic_compare_exchange_strong_explicit((p), (expp), (desired), \
		memory_order_acq_rel, memory_order_acquire)

static inline void ivsock_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

#define IVSOCK_CACHELINE 64

#endif
