/* SPDX-License-Identifier: MIT */
/*
 * Private declarations of the socket core of libivsock.so (sock_*.c, real.c,
 * log.c): the accelerated-socket object, the fd table, the process's agent
 * connection, configuration and counters. Not seen by the multiplexers.
 */
#ifndef IVS_SOCK_INT_H
#define IVS_SOCK_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <signal.h>

#include "ivsock/agent_client.h"
#include "ivsock/channel.h"
#include "shim.h"
#include "fdguard.h"

/* ---- the real libc functions the core needs (besides shim.h's) ---- */
struct ivs_real_core {
	ssize_t (*read)(int, void *, size_t);
	ssize_t (*write)(int, const void *, size_t);
	ssize_t (*readv)(int, const struct iovec *, int);
	ssize_t (*writev)(int, const struct iovec *, int);
	ssize_t (*recv)(int, void *, size_t, int);
	ssize_t (*send)(int, const void *, size_t, int);
	ssize_t (*recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
	ssize_t (*sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
	ssize_t (*recvmsg)(int, struct msghdr *, int);
	ssize_t (*sendmsg)(int, const struct msghdr *, int);
	ssize_t (*sendfile)(int, int, off_t *, size_t);
	ssize_t (*sendfile64)(int, int, off_t *, size_t);
	int (*connect)(int, const struct sockaddr *, socklen_t);
	int (*bind)(int, const struct sockaddr *, socklen_t);
	int (*listen)(int, int);
	int (*accept)(int, struct sockaddr *, socklen_t *);
	int (*accept4)(int, struct sockaddr *, socklen_t *, int);
	int (*shutdown)(int, int);
	int (*getsockopt)(int, int, int, void *, socklen_t *);
	int (*setsockopt)(int, int, int, const void *, socklen_t);
	int (*ioctl)(int, unsigned long, ...);
	int (*fcntl)(int, int, ...);
	int (*fcntl64)(int, int, ...);
	int (*dup)(int);
	int (*dup2)(int, int);
	int (*dup3)(int, int, int);
	pid_t (*fork)(void);
	int (*execve)(const char *, char *const[], char *const[]);
	int (*sigaction)(int, const struct sigaction *, struct sigaction *);
};
extern struct ivs_real_core ivs_rc;

/* Call before using ivs_real / ivs_rc (cheap after the first time). */
static inline void ivs_init(void)
{
	extern _Atomic int ivs_real_ready;

	if (__builtin_expect(!atomic_load_explicit(&ivs_real_ready, memory_order_acquire), 0))
		ivs_real_init();
}

/* ---- configuration (environment, read once) and counters: log.c ---- */
struct ivs_config {
	bool disabled;        /* IVSOCK_DISABLE=1 */
	bool stats;           /* IVSOCK_STATS=1 */
	uint64_t spin_ns;     /* IVSOCK_SPIN_US */
	uint64_t attach_ns;   /* IVSOCK_ATTACH_MS: connector gives up waiting for accept */
	uint64_t attach_max_ns; /* IVSOCK_ATTACH_MAX_MS: same, while the shimmed
				 * listener is still registered (a busy server) */
	const char *agent;    /* IVSOCK_AGENT */
	uint64_t ring_size;   /* IVSOCK_RING_SIZE: ring size connects ask for, 0 = default */
	bool ring_grow;       /* IVSOCK_RING_GROW=1: heavy flows get larger rings */
};
extern struct ivs_config ivs_cfg;
void ivs_config_load(void);

enum ivs_counter {
	IVS_C_ACCEL_CONNECT, IVS_C_ACCEL_ACCEPT, IVS_C_LISTEN_REG,
	IVS_C_FB_NOT_TCP, IVS_C_FB_NO_AGENT, IVS_C_FB_NOT_VM, IVS_C_FB_NO_LISTENER,
	IVS_C_FB_BIND, IVS_C_FB_NO_RINGS, IVS_C_FB_OFFER, IVS_C_FB_CONNECT,
	IVS_C_FB_NO_OFFER, IVS_C_FB_ACCEPT, IVS_C_FB_PEER_TCP, IVS_C_FB_TIMEOUT,
	IVS_C_FB_FDMAX,
	IVS_C_FB_ABANDONED, IVS_C_FB_PEER_CLOSED, IVS_C_FB_CLOSED, IVS_C_FB_VANISHED,
	IVS_C_RESET_REVOKED, IVS_C_RESET_PEER_GONE,
	IVS_C_SWITCH_TX_TCP, IVS_C_SWITCH_RX_TCP, IVS_C_DEMOTED, IVS_C_SWITCH_STALL,
	IVS_C_SWITCH_OPERATOR, IVS_C_SWITCH_PEER, IVS_C_SWITCH_RESIZE, IVS_C_SWITCH_RECLAIM,
	IVS_C_RING_GROW, IVS_C_PROMOTED, IVS_C_PROMO_ASKED, IVS_C_PROMO_UNTAKEN, IVS_C_PROMO_OPERATOR, IVS_C_SWITCH_TX_RING,
	IVS_C_SWITCH_RX_RING,
	IVS_C_TX_BYTES, IVS_C_RX_BYTES, IVS_C_FALLBACK_BYTES, IVS_C_WAKES_SENT,
	IVS_C_SLEEPS,
	IVS_C_AGENT_UNTRUSTED, IVS_C_AGENT_TIMEOUT, IVS_C_AGENT_BAD_FD,
	IVS_C_MAX
};
void ivs_count(enum ivs_counter c, uint64_t n);
/* Count a fallback and log its reason at debug level. */
void ivs_fallback(enum ivs_counter c, int fd, const char *why, int err);

/* ---- the process's agent connection: sock_agent.c ---- */
struct ivs_agent {
	struct ivsock_agent_conn conn;
	struct ivsock_region *rg;
	struct ivsock_end_id me;
	int wake_fd;              /* == doorbell wait_fd, made non-blocking */
};
/*
 * Incremented in every forked child (atfork): objects created under another
 * generation must re-attach their private state before use.
 */
extern _Atomic unsigned ivs_fork_gen;
/* The agent of this process (connecting lazily, again after fork), or NULL. */
struct ivs_agent *ivs_agent_get(void);
/* Connect now (if not yet) and resolve what held sockets need (doorbells,
 * this thread's eventfd): before the program can sandbox itself. */
void ivs_agent_prepare(void);
struct ivs_sock;
/* Ring the other end of s's channel (reads its doorbell address afresh from
 * the peer's ctl page; pci: through s's window, which rings only that VM). */
void ivs_ring_peer(struct ivs_sock *s);
/* Block until woken (wake fd / thread fd) or fd has `kev` or timeout_ms.
 * @return 0, -EINTR. */
int ivs_sleep(int fd, short kev, int timeout_ms, short *revents);

/* ---- accelerated socket ---- */
enum ivs_kind { IVS_LISTENER = 1, IVS_CONN = 2 };
enum ivs_state {
	IVS_ST_OFFERED = 1,   /* connector: rings ready, acceptor not attached */
	IVS_ST_CONNECTED = 2, /* rings are the stream */
	IVS_ST_PLAIN = 3,     /* fell back: plain TCP from now on */
};

struct ivs_sock {
	_Atomic int refs;
	_Atomic int alive;          /* 1 while not on the free list */
	int kind;
	_Atomic int nfds;           /* fds of this process pointing here */
	unsigned fork_gen;          /* generation the private views belong to */
	unsigned held_gen;          /* generation whose holder count includes us */
	int kfd;                    /* one fd of ours on the kernel socket */
	struct ivs_agent *ag;

	/* listener */
	uint32_t lidx, lgen;
	bool lshared;               /* a fork happened since registering */

	/* connection */
	_Atomic int state;
	struct ivsock_block_map map; /* our window onto the channel's block */
	int winfd;                  /* pci: that window (rings go through it); -1 */
	bool inherited;             /* re-attached after exec: not our client's */
	uint64_t offered_ns;        /* when the offer was posted */
	_Atomic bool acceptor_won;  /* seen ACCEPTING: the acceptor took the offer,
				     * the rings are the stream (never fall back) */
	uint8_t dst_vm;             /* the listener the offer was made for */
	uint16_t dport;
	struct ivsock_addr dst;
	_Atomic uint64_t lcheck_ns; /* last check that the listener is registered */
	_Atomic int lalive;         /* ... and its answer */
	_Atomic int revoked;        /* channel revoked/stale: reported as a reset */
	_Atomic int let_go;         /* both directions switched to TCP: the channel is
				     * being released (its slot may be freed before the
				     * state is PLAIN: not a revocation) */
	_Atomic int demote;         /* moving to TCP, and why: IVSOCK_SWITCH_WHY_*
				     * (ivsockd asked: DEMOTED; a stalled writer;
				     * the peer's tx went first: sock_switch.c) */
	_Atomic int tx_tcp;         /* our tx left the ring (tx_switch published) */
	_Atomic uint64_t nb_stall_ns; /* a non-blocking send found both rings full
				       * then (0: not stalled; sock_data.c) */
	_Atomic uint64_t stall_mark;  /* the peer's ring indices when that began */

	/* TCP -> ring (sock_promote.c, docs/switch.md). A PLAIN socket with
	 * promo_ok may still get a channel: both ends run the shim. */
	bool promo_ok;
	bool promo_auto;            /* connector: asks for a channel on its own
				     * (it fell back for lack of rings) */
	bool promo_offer;           /* PLAIN connector: channel offered, block mapped */
	bool promo_taken;           /* PLAIN acceptor: took the offer, not CONNECTED yet */
	bool promo_acceptor;        /* which end of the TCP connection we are */
	bool promo_listen;          /* connector: no shimmed listener was there;
				     * looks for its registration (promo_next_ns) */
	_Atomic int kbusy;          /* PLAIN + promo_ok: our calls inside the kernel
				     * on it (a promotion waits for 0) */
	_Atomic int promo_busy;     /* a promotion is changing the state: calls wait */
	_Atomic int promo_lock;     /* one thread promotes at a time (trylock) */
	uint64_t promo_next_ns;     /* connector: next request; acceptor: next look */
	uint32_t promo_backoff_ms;
	uint32_t promo_fails;       /* offers never taken in a row */
	uint32_t promo_size;        /* ring size to ask for (ring -> ring), 0: default */
	struct ivsock_tuple ptuple; /* the connection as the connector names it */
	/* PLAIN connector with promo_ok: its TCP entry in the channel table
	 * (listed by ivsockctl, promotable by the operator: docs/switch.md,
	 * "Connections on TCP"); gen 0: none. track_req: the last
	 * promote_req of ivsockd seen; track_next_ns: next try to record it. */
	uint32_t track_idx, track_gen, track_req;
	uint64_t track_next_ns;
	/* CONNECTED after a promotion: ptx, our tx is still on TCP (until our
	 * tx_start); prx, our rx is on TCP until the kernel read count reaches
	 * the peer's tx_start. */
	_Atomic int ptx, prx;
	/* IVSOCK_RING_GROW (ivs_policy_tx, tx_lock): this window's sends, those
	 * that found the ring full, bytes; when it began; no move before cool */
	uint32_t hv_calls, hv_full;
	uint64_t hv_bytes, hv_start, hv_cool;
	struct ivsock_chan_view v;
	pthread_mutex_t rx_lock, tx_lock;
	_Atomic int nonblock;       /* O_NONBLOCK as set through F_SETFL/FIONBIO */
	int64_t rcvtimeo_ms, sndtimeo_ms; /* 0 = none */
	bool shut_wr, shut_rd;
	_Atomic int kshut_done;     /* SHUT_WR passed to the kernel socket */
	_Atomic int kfin;           /* kernel socket saw the peer's FIN/HUP */
	_Atomic int so_error;       /* pending error (ECONNRESET) for SO_ERROR */
	_Atomic uint64_t event_seq;
	uint64_t tx_pending, rx_pending; /* bytes not yet added to the end counters */
	uint64_t ring_tx_done, ring_rx_done; /* on this connection's earlier channels
					      * (ring_tx_before of the next one) */
	_Atomic int closed;         /* our end released */
	bool shared;                /* another process may use it too (fork) */
	bool reset_told;            /* ECONNRESET reported once; EOF after */
	bool adopted;               /* we re-pointed our end's doorbell at us
				     * (the words of our ctl page) */
	uint32_t prev_peer, prev_vector; /* doorbell address before that */
};

/* fd table: sock_table.c */
struct ivs_sock *ivs_fd_lookup(int fd);         /* no reference taken */
struct ivs_sock *ivs_fd_get(int fd);            /* reference taken */
int ivs_fd_install(int fd, struct ivs_sock *s); /* takes an fd count; -EMFILE */
struct ivs_sock *ivs_fd_remove(int fd);         /* returns the old entry (ref kept) */
void ivs_fd_forget(int fd);                     /* the program closed fd (sock_ctl.c) */
struct ivs_sock *ivs_sock_new(int kind, struct ivs_agent *ag);
void ivs_sock_free(struct ivs_sock *s);
/* Iterate every installed fd (single-threaded contexts: fork child, exit). */
void ivs_fd_foreach(void (*fn)(int fd, struct ivs_sock *s, void *arg), void *arg);
void ivs_table_atfork_child(void);

/* connection lifecycle: sock_conn.c */
void ivs_listener_release(struct ivs_sock *s);
/* Process's last fd of s closed: EOF/release the channel (holders). */
void ivs_conn_release(struct ivs_sock *s, int fd);
/* Unmap s's block and close its window (the end itself is not released). */
void ivs_conn_detach(struct ivs_sock *s);
/* Make the private views of s valid in this process (after fork). */
void ivs_sock_refresh(struct ivs_sock *s);
/* Connector fallback while OFFERED: abandon, take back unconsumed bytes and
 * send them on fd. Called with tx_lock held. @return 0 (now PLAIN), 1 (the
 * acceptor attached: CONNECTED), 2 (the acceptor won the offer and is
 * attaching: stay OFFERED, acceptor_won set, never fall back), -errno. */
int ivs_conn_fallback(struct ivs_sock *s, int fd, enum ivs_counter why);
/* OFFERED: has the acceptor attached? promote to CONNECTED. */
int ivs_conn_check_attached(struct ivs_sock *s);
void ivs_conn_flush_counts(struct ivs_sock *s, bool force);
/* Both directions switched to TCP: release the channel, become PLAIN
 * (rx_lock and tx_lock held). */
void ivs_conn_release_switched(struct ivs_sock *s, int fd);
extern __thread int ivs_in_mux;

/* CONNECTED: is the channel still ours (not revoked, not reused)? One
 * acquire load of the slot word; sticky once false. sock_data.c */
bool ivs_chan_revoked(struct ivs_sock *s);

/* ring -> TCP switching (sock_switch.c, docs/switch.md). */
/* Has the peer's tx stream left the ring and have we read the ring up to
 * where it left? Then the rest of our rx stream is on the kernel socket.
 * Lock-free (a snapshot; true stays true). */
bool ivs_rx_on_tcp(struct ivs_sock *s);
/* Move our tx to TCP if a switch is wanted and we may (sole holder); then,
 * with rx drained too, release the channel: the socket becomes PLAIN.
 * Takes rx_lock/tx_lock unless `locked` says which the caller holds
 * (bit 0 rx, bit 1 tx); trylock if `try`. @return true if now PLAIN. */
bool ivs_switch_progress(struct ivs_sock *s, int fd, int locked, bool try);
/* May this process switch s's tx (sole holder of the end)? */
static inline bool ivs_switch_ours(struct ivs_sock *s)
{
	return !s->shared && atomic_load(&s->v.my_ctl->holders) <= 1;
}

/* TCP -> ring (sock_promote.c). */
/* A connector that fell back for lack of rings (the listener runs the shim):
 * keep a PLAIN entry that may be promoted later. */
void ivs_promo_connector(struct ivs_agent *ag, int fd, const struct ivsock_tuple *t, int vm);
/* An accepted connection without an offer, from a VM of the domain. */
void ivs_promo_acceptor(struct ivs_agent *ag, int fd);
/* connect(): no shimmed listener at a VM of the domain: keep a PLAIN entry
 * that looks for the listener's registration now and then, and is then
 * promoted like ivs_promo_connector's. */
void ivs_promo_watch(struct ivs_agent *ag, int fd, const struct ivsock_tuple *t, int vm);
/* The socket for a data-path call on fd: accelerated (returned, ref
 * taken), or NULL: the real call; *tcp then may hold a PLAIN promotable
 * socket whose kbusy was raised: ivs_promo_leave() after the real call. */
struct ivs_sock *ivs_io_get(int fd, struct ivs_sock **tcp);
void ivs_promo_leave(struct ivs_sock *tcp);
/* Count a real call on s (kbusy) unless a promotion is changing it (then
 * wait for that and return false: look the socket up again). */
bool ivs_promo_enter(struct ivs_sock *s);
/* CONNECTED after a promotion: move our tx to the ring if we may (tx_lock
 * held). */
void ivs_promo_tx(struct ivs_sock *s, int fd);
/* prx: how much of our rx is left on TCP (rx_lock held). @return 1 done
 * (prx cleared: the ring from now on), 0 with *left (SIZE_MAX while the
 * peer's tx is still on TCP; 0: unknown for now, look again), -ECONNRESET
 * (the peer's word is wrong). */
int ivs_promo_rx_left(struct ivs_sock *s, int fd, size_t *left);
/* FIONREAD of a promoted rx (prx): the kernel's queue up to the peer's
 * tx_start. @return 0 with *n, 1 if the TCP part is read (the ring's count
 * applies), -errno. */
int ivs_promo_inq(struct ivs_sock *s, int fd, int *n);
/* ptx/prx progress from a multiplexer (trylocks). */
void ivs_promo_progress(struct ivs_sock *s, int fd);
/* Both directions went back to TCP and the channel is released (PLAIN):
 * may the connection get a ring again? (a resize asks for one at once) */
void ivs_promo_after_switch(struct ivs_sock *s, int fd);
/* IVSOCK_RING_GROW: account one send on a CONNECTED ring (tx_lock held);
 * a flow that keeps its ring full asks for the next larger class. */
void ivs_policy_tx(struct ivs_sock *s, size_t sent, bool full);
/* The program closed a PLAIN socket: withdraw a pending offer. */
void ivs_promo_release(struct ivs_sock *s, int fd);
int ivs_conn_attach_block(struct ivs_agent *ag, struct ivs_sock *s, const struct ivsock_ag_chan *r,
			  int wfd);

/* data path: sock_data.c; return count, -errno, or IVS_PASS (use the real call) */
#define IVS_PASS (-100000)
void ivs_flush_tx_count(struct ivs_sock *s); /* tx_lock held */
ssize_t ivs_recv(struct ivs_sock *s, int fd, const struct iovec *iov, int iovcnt, int flags);
ssize_t ivs_send(struct ivs_sock *s, int fd, const struct iovec *iov, int iovcnt, int flags);

/* SA_RESTART emulation (sock_signal.c): mark before sleeping; after an
 * EINTR, restart if every handler that ran since asked for SA_RESTART. */
struct ivs_sigmark { unsigned all, norestart; };
void ivs_sig_mark(struct ivs_sigmark *m);
bool ivs_sig_restartable(const struct ivs_sigmark *m);
/* Has any handler run in this thread since the mark? */
bool ivs_sig_ran(const struct ivs_sigmark *m);

static inline long ivs_set_errno(long rc)
{
	extern int *__errno_location(void);
	if (rc < 0) {
		*__errno_location() = (int)-rc;
		return -1;
	}
	return rc;
}

#define IVS_EXPORT __attribute__((visibility("default")))

#endif
