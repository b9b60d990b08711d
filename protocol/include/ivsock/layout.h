/* SPDX-License-Identifier: MIT */
/*
 * The shared region: superblock, VM directory, listener registry, connection
 * offers, channel table, per-VM control mailboxes, one slot word per block,
 * then the block pool: page-aligned channel blocks in up to IVSOCK_CLASS_MAX
 * size classes, each class split in per-VM partitions.
 * Offsets, never pointers; every capacity is fixed at format time and read
 * from the superblock once, validated, and kept in a private struct
 * ivsock_region. Who writes each field is written next to it; docs/layout.md
 * has the whole picture.
 */
#ifndef IVSOCK_LAYOUT_H
#define IVSOCK_LAYOUT_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#include "ivsock/barrier.h"
#include "ivsock/slot.h"
#include "ivsock/ring.h"

#define IVSOCK_MAGIC          0x3130524b434f5356ULL /* "VSOCKR01" little-endian */
#define IVSOCK_LAYOUT_VERSION 5U

#define IVSOCK_NAME_MAX       64
#define IVSOCK_VM_MAX_ADDRS   8
#define IVSOCK_MAILBOX_MSG_MAX 1024
#define IVSOCK_MAX_VMS        255 /* owner VM index is 8 bits; 255 reserved */
#define IVSOCK_VM_NONE        255

#define IVSOCK_PAGE           4096u /* window granule: blocks, halves, tables */
/* The ctl words of an end take the first IVSOCK_CTL_SIZE bytes of its half;
 * its ring data follows at that offset, 0xbc0 into the half's first page.
 * Where the data starts decides whether copies between a program's buffer
 * and the ring stall on 4 KiB aliasing (loads and stores whose addresses
 * agree in their low 12 bits): on the next page (0) or half a page in
 * (2048) the receive copy of 1-16 KiB messages ran at a third of its speed
 * against page-aligned and malloc'd buffers; 0xbc0 (2048+512+256+128+64)
 * was the one start fast against every buffer offset measured
 * (docs/bench.md, "Where the ring data starts"). */
#define IVSOCK_CTL_SIZE       3008u
#define IVSOCK_CLASS_MAX      4     /* ring size classes of the block pool */
/* Smallest ring of a block: 1 KiB fits beside the ctl words in one page
 * (3008 + 1024 <= 4096), so a block of the smallest class is two pages,
 * the memory floor of an idle accelerated connection. */
#define IVSOCK_BLOCK_RING_MIN 1024u
#define IVSOCK_BLOCK_RING_MAX (1U << 30)

/* Address families on the wire (independent of the host's AF_* values). */
enum { IVSOCK_AF_NONE = 0, IVSOCK_AF_INET = 4, IVSOCK_AF_INET6 = 6 };

/* An IPv4 or IPv6 address. IPv4 sits in the first 4 bytes, rest zero. */
struct ivsock_addr {
	uint8_t family;   /* IVSOCK_AF_* */
	uint8_t reserved[3];
	uint8_t bytes[16];
};

/* A TCP 4-tuple as the connecting side sees it. Ports in host order. */
struct ivsock_tuple {
	struct ivsock_addr src;
	struct ivsock_addr dst;
	uint16_t sport;
	uint16_t dport;
};

/*
 * Explicit atomic access to the plain (non-_Atomic) words of the shared
 * tables. Every read of a field another party may write goes through one of
 * these, once, into a private copy that is validated before use: the
 * compiler can neither re-load it (TOCTOU) nor tear it. The __atomic
 * builtins take plain objects (gcc and clang).
 */
#define ivsock_ld32(p)     __atomic_load_n((p), __ATOMIC_RELAXED)
#define ivsock_st32(p, v)  __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define ivsock_ld16(p)     __atomic_load_n((p), __ATOMIC_RELAXED)
#define ivsock_st16(p, v)  __atomic_store_n((p), (v), __ATOMIC_RELAXED)

/* Copy n bytes out of (into) shared memory with relaxed byte loads (stores).
 * For small records (tuples, addresses, names) on control paths only. */
static inline void ivsock_copy_from_shared(void *dst, const void *src, size_t n)
{
	const uint8_t *s = (const uint8_t *)src;
	uint8_t *d = (uint8_t *)dst;

	while (n--)
		*d++ = __atomic_load_n(s++, __ATOMIC_RELAXED);
}

static inline void ivsock_copy_to_shared(void *dst, const void *src, size_t n)
{
	const uint8_t *s = (const uint8_t *)src;
	uint8_t *d = (uint8_t *)dst;

	while (n--)
		__atomic_store_n(d++, *s++, __ATOMIC_RELAXED);
}

/* ---------------- superblock: written only by ivsockd ---------------- */

enum { IVSOCK_DAEMON_UP = 1, IVSOCK_DAEMON_STOPPED = 2 };

/* One size class of the block pool (written by ivsockd at format). */
struct ivsock_class_desc {
	uint32_t ring_size;       /* data bytes per ring of this class; power of two >= 4096 */
	uint32_t blocks_per_vm;   /* per-VM quota of blocks of this class (may be 0) */
	uint64_t block_size;      /* ivsock_block_size(ring_size) */
	uint32_t first_block;     /* global index of this class's first block */
	uint32_t pad;
	uint64_t pool_off;        /* byte offset of this class's blocks (page aligned) */
};
_Static_assert(sizeof(struct ivsock_class_desc) == 32, "class descriptor is 32 bytes");

struct ivsock_superblock {
	uint64_t magic;           /* IVSOCK_MAGIC */
	uint32_t version;         /* IVSOCK_LAYOUT_VERSION */
	uint32_t sb_size;         /* sizeof(struct ivsock_superblock) */
	uint64_t region_size;     /* bytes; power of two */
	uint64_t format_id;       /* random per format: detects a re-format */
	uint32_t vm_cap;          /* directory entries == mailboxes == partitions */
	uint32_t listener_cap;
	uint32_t offer_cap;       /* power of two (open addressing) */
	uint32_t channel_cap;
	uint32_t daemon_peer_id;  /* ivshmem peer ID the daemon answers on */
	uint32_t nclasses;        /* 1..IVSOCK_CLASS_MAX classes in class[] */
	uint32_t default_class;   /* class a connection gets unless told otherwise */
	uint32_t pad0;
	struct ivsock_class_desc class[IVSOCK_CLASS_MAX]; /* unused ones zero */
	uint64_t vm_off;
	uint64_t listener_off;
	uint64_t offer_off;
	uint64_t channel_off;
	uint64_t mailbox_off;
	uint64_t blockslot_off;   /* one slot word per block of the pool */
	uint64_t pool_off;        /* block memory: classes one after another;
				   * [0, pool_off) is the tables part (no payload) */
	uint64_t pool_size;
	/* own cache line: moves every heartbeat */
	_Alignas(IVSOCK_CACHELINE) ivsock_a64 daemon_heartbeat; /* bumped every heartbeat period by ivsockd */
	ivsock_a32 daemon_state;     /* IVSOCK_DAEMON_* */
	ivsock_a32 daemon_epoch;     /* bumped at each daemon start on this region */
	uint8_t pad2[IVSOCK_CACHELINE - 16];
};
_Static_assert(offsetof(struct ivsock_superblock, daemon_heartbeat) % 8 == 0, "aligned");

/* ---------------- VM directory: written only by ivsockd ---------------- */

enum {
	IVSOCK_VM_ALIVE = 2, /* slot states after INIT */
	IVSOCK_VM_DEAD  = 3, /* peer disconnected; partition held until released */
};

struct ivsock_vm_entry {
	ivsock_a64 slot;          /* state IVSOCK_VM_*; owner vm == own index */
	uint32_t peer_id;         /* ivshmem peer ID (0..65535) */
	uint32_t vectors;
	char name[IVSOCK_NAME_MAX];   /* NUL-terminated (validate!) */
	uint8_t uuid[16];
	ivsock_a32 addr_seq;      /* seqlock over naddrs/addrs: odd while writing */
	uint32_t naddrs;
	struct ivsock_addr addrs[IVSOCK_VM_MAX_ADDRS];
	ivsock_a64 rx_bytes;      /* counters sampled by ivsockd */
	ivsock_a64 tx_bytes;
	uint8_t pad[32];
};

/* -------- listener registry: written by the owning shim process -------- */

enum { IVSOCK_LISTENER_ACTIVE = 2 };

struct ivsock_listener {
	ivsock_a64 slot;          /* owner = (vm, client) of the listening process */
	struct ivsock_addr addr;  /* family set, bytes all zero = wildcard */
	uint16_t port;            /* host order */
	uint16_t reserved;
	uint32_t vm_index;        /* same as slot owner, kept for readers */
	uint32_t pad[2];
};

/* ------- offers: written by the connecting shim, keyed by 4-tuple ------- */

enum { IVSOCK_OFFER_POSTED = 2 };

struct ivsock_offer {
	ivsock_a64 slot;          /* owner = connector; freed by whoever wins */
	struct ivsock_tuple tuple;
	uint32_t channel;         /* index into the channel table */
	uint32_t channel_gen;
	uint32_t pad[2];
};

/* -------------------------- channel table -------------------------- */

enum {
	IVSOCK_CHAN_OFFERED   = 2, /* connector ready; acceptor not attached yet */
	IVSOCK_CHAN_CONNECTED = 3, /* acceptor attached: rings are the stream */
	IVSOCK_CHAN_ABANDONED = 4, /* connector fell back to TCP before attach */
	IVSOCK_CHAN_REVOKED   = 5, /* ivsockd withdrew it (QoS/migration) */
	IVSOCK_CHAN_ACCEPTING = 6, /* acceptor won the offer and is writing its
				    * end; becomes CONNECTED (release) */
	IVSOCK_CHAN_DEMOTED   = 7, /* ivsockd asked both ends to move the stream
				    * to TCP (CONNECTED -> DEMOTED, its one CAS):
				    * each end switches its tx at a byte offset
				    * (ivsock_end_ctl.tx_switch), drains its rx,
				    * and releases the channel (docs/switch.md) */
	IVSOCK_CHAN_TCP       = 8, /* no rings: a connection on TCP whose ends
				    * both run the shim, listed for operators
				    * and promotable (docs/switch.md, "Connections
				    * on TCP"); only end[0] is filled, block_gen
				    * is 0; written and freed by the connector's
				    * agent, promote_req by ivsockd */
};

/* Flags of one end, written only by that end (or its agent after death). */
enum {
	IVSOCK_END_ATTACHED = 1U << 0,
	IVSOCK_END_CLOSED   = 1U << 1, /* end released the channel */
	IVSOCK_END_DEAD     = 1U << 2, /* process died: peer reports ECONNRESET */
};

/* An end's record in the table: written by that end's agent only (its
 * processes write the end's ctl page instead, see struct ivsock_end_ctl). */
struct ivsock_chan_end {
	uint32_t vm_index;
	uint32_t peer_id;          /* initial doorbell address of this end: (peer_id,
				    * vector), as recorded at open/accept; the live
				    * copy is in the end's ctl page */
	uint32_t vector;
	uint32_t client;           /* agent client id */
	ivsock_a32 flags;          /* IVSOCK_END_* */
	uint32_t uid;              /* owner uid (monitors, per-uid limits) */
	uint64_t cookie;           /* SO_COOKIE of the end's socket, recorded by its
				    * agent: a holder proves ownership with it */
	uint8_t pad2[IVSOCK_CACHELINE - 32];
};

struct ivsock_channel {
	ivsock_a64 slot;           /* state IVSOCK_CHAN_*; owner = connector, except
				    * in ACCEPTING: owner = the acceptor that won
				    * the offer (so that its death is found) */
	/* written by the connector's side in INIT, before the offer is posted,
	 * and never again; readers copy them once (ivsock_ld32) and validate: */
	uint32_t block;            /* block index in the pool (connector's partition) */
	uint32_t block_gen;
	uint32_t next_block;       /* reserved for ring -> ring switching: 0 */
	uint32_t next_block_gen;
	struct ivsock_tuple tuple;
	uint32_t dst_vm;           /* VM owning tuple.dst (the listener's VM) as the
				    * connector found it, IVSOCK_VM_NONE if unknown;
				    * an acceptor of another VM is refused */
	uint32_t offer;            /* the offer posted for it (connector's agent,
				    * after posting; read only by that agent) */
	uint32_t offer_gen;
	/* ring -> ring: the ring size ivsockd wants the connection moved to,
	 * stored by ivsockd just before it moves the slot to DEMOTED (0 at
	 * INIT, by the opener: a plain demote). The ends read it once they
	 * see DEMOTED (docs/switch.md, "Ring -> ring"); a hint, never trusted
	 * for sizes (the agent picks the class). */
	ivsock_a32 resize_to;
#define IVSOCK_RESIZE_RECLAIM 1u   /* resize_to: no ring now (ivsockd's policy took
				    * it back); the connector asks again on use */
	/* TCP state only: ivsockd's count of promotions asked for (the
	 * operator's `channel promote`), resize_to holding the ring size (0:
	 * the connector's default) stored before it (release). The
	 * connector's shim asks for a ring when the count changed; 0 at
	 * INIT. A request, never trusted for sizes. */
	ivsock_a32 promote_req;
	/* each end on its own cache line */
	_Alignas(IVSOCK_CACHELINE) struct ivsock_chan_end end[2]; /* [0] connector, [1] acceptor */
};

_Static_assert(sizeof(struct ivsock_chan_end) == IVSOCK_CACHELINE, "end is one line");
_Static_assert(sizeof(struct ivsock_channel) % IVSOCK_CACHELINE == 0, "channel lines");
_Static_assert(offsetof(struct ivsock_channel, end) == 2 * IVSOCK_CACHELINE, "end[] did not move");

/* ------------- the block: one channel's memory, two halves -------------
 *
 *   offset 0          ctl words of end 0 (connector) written only by end 0
 *   offset 3008       data of ring c2s (S bytes)     written only by end 0
 *   offset 4096+S     ctl words of end 1 (acceptor)  written only by end 1
 *   offset 7104+S     data of ring s2c (S bytes)     written only by end 1
 *   block size = 2 * (4096 + S)
 *
 * Each end writes exactly one contiguous half and only reads the other: the
 * kernel window of end X is RW over half X, RO over the other half. */
struct ivsock_end_ctl {
	/* lines 0-1: producer words of the ring this end produces into */
	struct ivsock_ring_prod prod;
	/* lines 2-3: consumer words of the ring this end consumes */
	struct ivsock_ring_cons cons;
	/* line 4: end words */
	uint32_t peer_id;          /* doorbell address of this end (peer_id, vector);
				    * a forked holder re-points them to itself */
	uint32_t vector;
	ivsock_a32 holders;        /* processes holding this end: atomic add/sub */
	uint32_t pad0;
	ivsock_a64 tx_bytes;       /* counters (relaxed; audited by ivsockd) */
	ivsock_a64 rx_bytes;
	/* Where this end's tx stream left the ring: 0 while the ring is its
	 * path; IVSOCK_SWITCH_TCP | ring index once it continues on the
	 * kernel TCP socket: the consumer reads the ring up to that index,
	 * then the socket. Stored once (release), after the last ring write. */
	ivsock_a64 tx_switch;
	/* Why it left (IVSOCK_SWITCH_WHY_*), stored before tx_switch by the
	 * same writer; for monitors only, nobody acts on it. */
	ivsock_a32 switch_reason;
	/* TCP -> ring (a channel opened for a connection already on TCP):
	 * rx_ready: 1 once this end reads the channel's ring (no call of its
	 * process waits in the kernel any more), the peer moves its tx only
	 * after that; tx_start: 0 while this end's tx is on TCP,
	 * IVSOCK_START_RING | n once it continues on the ring after n bytes
	 * written to the kernel socket (ring index 0 is stream byte n). Each
	 * stored once (release) by this end. */
	ivsock_a32 rx_ready;
	ivsock_a64 tx_start;
	/* with switch_reason IVSOCK_SWITCH_WHY_RESIZE: the ring size this end
	 * wants next (stored with it, before tx_switch) */
	ivsock_a32 resize_want;
	uint8_t pad1[IVSOCK_CACHELINE - 60];
	/* line 5: this connection's bytes on its earlier rings (a connection
	 * moved ring -> TCP -> ring has had more than one channel): sent and
	 * received by this end, stored by it before rx_ready on a channel
	 * opened for a connection already on TCP, 0 on its first channel. For
	 * monitors only (per-path counters: docs/switch.md, "Per-path bytes");
	 * nobody acts on them. */
	ivsock_a64 ring_tx_before;
	ivsock_a64 ring_rx_before;
	uint8_t pad2[IVSOCK_CACHELINE - 16];
	/* rest of the page: zero, reserved (one writer: this end) */
};
#define IVSOCK_SWITCH_TCP (1ULL << 63) /* tx_switch: the stream went on TCP */
#define IVSOCK_START_RING (1ULL << 63) /* tx_start: the stream came to the ring */
enum {
	IVSOCK_SWITCH_WHY_OPERATOR = 1, /* the channel was DEMOTED (ivsockctl, ivsockd) */
	IVSOCK_SWITCH_WHY_STALLED = 2,  /* a writer found both rings full for 100 ms */
	IVSOCK_SWITCH_WHY_PEER = 3,     /* the peer's tx left first: followed it */
	IVSOCK_SWITCH_WHY_RESIZE = 4,   /* DEMOTED with resize_to: a new ring follows */
	IVSOCK_SWITCH_WHY_RECLAIM = 5,  /* DEMOTED with IVSOCK_RESIZE_RECLAIM: the ring was
					 * taken back; a ring again when it is next used */
};
_Static_assert(sizeof(struct ivsock_end_ctl) == 6 * IVSOCK_CACHELINE, "ctl words are 6 lines");
_Static_assert(sizeof(struct ivsock_end_ctl) <= IVSOCK_CTL_SIZE, "ctl words fit before the data");

/* Byte offset and length of half `side` inside a block of class ring_size
 * (what a window maps). */
static inline uint64_t ivsock_block_half_len(uint32_t ring_size)
{
	/* ctl words + data, rounded up to the window granule: one page more
	 * than the ring from 4 KiB up, a single page for rings <= 1 KiB */
	return ((uint64_t)IVSOCK_CTL_SIZE + ring_size + IVSOCK_PAGE - 1) &
	       ~(uint64_t)(IVSOCK_PAGE - 1);
}

static inline uint64_t ivsock_block_half_off(uint32_t ring_size, int side)
{
	return side ? ivsock_block_half_len(ring_size) : 0;
}

static inline uint64_t ivsock_block_size(uint32_t ring_size)
{
	return 2 * ivsock_block_half_len(ring_size);
}

/* Pointers into a block of class ring_size mapped at `block`: the ctl page
 * of end `side`, and the data of the ring end `side` produces. */
struct ivsock_end_ctl *ivsock_block_ctl(void *block, uint32_t ring_size, int side);
uint8_t *ivsock_block_data(void *block, uint32_t ring_size, int side);

/* ------- control mailbox of a VM: agent <-> ivsockd requests ------- */

struct ivsock_mailbox {
	/* written only by the VM's agent */
	ivsock_a32 req_seq;        /* bumped after req/req_len are written */
	uint32_t req_len;
	ivsock_a64 agent_heartbeat;
	uint8_t req[IVSOCK_MAILBOX_MSG_MAX];
	uint8_t pad0[IVSOCK_CACHELINE - 16];
	/* written only by ivsockd */
	ivsock_a32 resp_seq;       /* == req_seq once answered */
	uint32_t resp_len;
	uint8_t resp[IVSOCK_MAILBOX_MSG_MAX];
	uint8_t pad1[IVSOCK_CACHELINE - 8];
};

_Static_assert(sizeof(struct ivsock_mailbox) % IVSOCK_CACHELINE == 0, "mailbox lines");
_Static_assert(offsetof(struct ivsock_mailbox, resp_seq) % IVSOCK_CACHELINE == 0,
	       "daemon half of the mailbox on its own line");

/* ---------------- private, validated view of a region ---------------- */

struct ivsock_region {
	uint8_t *base;
	size_t size;
	struct ivsock_superblock *sb;
	/* validated copies of the superblock geometry */
	uint32_t vm_cap, listener_cap, offer_cap, channel_cap;
	uint32_t nclasses, default_class;
	struct ivsock_class_desc class[IVSOCK_CLASS_MAX]; /* ring_size, blocks_per_vm,
							   * block_size, first_block, pool_off */
	uint32_t nblocks;          /* all classes, all VMs */
	uint64_t tables_size;      /* == pool_off: the tables part, page aligned */
	uint64_t format_id;
	struct ivsock_vm_entry *vms;
	struct ivsock_listener *listeners;
	struct ivsock_offer *offers;
	struct ivsock_channel *channels;
	struct ivsock_mailbox *mailboxes;
	ivsock_a64 *blockslots;
	uint8_t *pool;
};

struct ivsock_region_params {
	uint32_t vm_cap;       /* default 16 */
	uint32_t listener_cap; /* default 256 */
	uint32_t offer_cap;    /* default 1024, rounded up to a power of two */
	uint32_t channel_cap;  /* default 1024 */
	uint32_t nclasses;     /* 1..IVSOCK_CLASS_MAX; default 4 */
	uint32_t class_size[IVSOCK_CLASS_MAX];  /* ring size of each class: power of
						 * two >= 4 KiB, strictly increasing;
						 * default 4K, 32K, 128K, 1M */
	uint32_t class_share[IVSOCK_CLASS_MAX]; /* percent of the pool of each class
						 * (sum <= 100); default 10/20/50/20 */
	uint32_t default_class; /* default 2 (128 KiB) */
	uint32_t daemon_peer_id;
};

/* Fill p with the defaults above. */
void ivsock_region_params_default(struct ivsock_region_params *p);
/* Defaults, but one class of ring_size getting the whole pool. */
void ivsock_region_params_single(struct ivsock_region_params *p, uint32_t ring_size);

/*
 * Lay out and zero a region of `size` bytes (a power of two) at base.
 * @return 0, -EINVAL (bad size/params), -ENOSPC (tables do not fit, or no
 *         class gets a block).
 */
int ivsock_region_format(struct ivsock_region *rg, void *base, size_t size,
			 const struct ivsock_region_params *p);

/*
 * Attach to a region someone else formatted: checks magic, version, size,
 * and recomputes the whole geometry from the capacities and the class list
 * (ring_size, blocks_per_vm of each class); anything else is refused.
 * @return 0, -EBADF (wrong magic: not an ivsock region), -EPROTONOSUPPORT
 *         (layout version mismatch), -EMSGSIZE (size mismatch), -EPROTO
 *         (inconsistent geometry). ivsock_region_strerror() explains.
 */
int ivsock_region_attach(struct ivsock_region *rg, void *base, size_t size);
/*
 * The same for a process that maps only the tables part, [0, map_len) with
 * map_len >= tables_size, of a region of region_size bytes (read-only: it
 * reads the tables and gets ring memory one block at a time, through
 * windows). rg->pool is NULL: the block accessors must not be used.
 */
int ivsock_region_attach_tables(struct ivsock_region *rg, void *base, size_t map_len,
				size_t region_size);
const char *ivsock_region_strerror(int err);

/* Block `idx` of the pool: its memory, or NULL if idx is out of range. */
void *ivsock_region_block_mem(const struct ivsock_region *rg, uint32_t idx);
/* Its byte offset in the region (page aligned), 0 if out of range. */
uint64_t ivsock_region_block_off(const struct ivsock_region *rg, uint32_t idx);
/* Its class, -1 if out of range. */
int ivsock_region_block_class(const struct ivsock_region *rg, uint32_t idx);
/* Its partition (VM index), IVSOCK_VM_NONE if out of range. */
uint32_t ivsock_region_block_vm(const struct ivsock_region *rg, uint32_t idx);

/* ---- block pool: per class, per-VM partitions of blocks_per_vm blocks ---- */

/*
 * Claim a block of class cls from VM vm's partition for (vm, client) and
 * format both its rings (both ctl pages zeroed).
 * @return 0 with *idx, *gen set; -ENOSPC when that quota is full (or 0),
 *         -EINVAL (vm or cls out of range).
 */
int ivsock_block_alloc(struct ivsock_region *rg, uint8_t vm, uint32_t cls, uint16_t client,
		       uint32_t *idx, uint32_t *gen);
/* @return 0 or -ESTALE (already freed / generation moved on), -EINVAL. */
int ivsock_block_free(struct ivsock_region *rg, uint32_t idx, uint32_t gen);
/* Free every block of vm's partitions (ivsockd reclaiming a dead VM), except
 * the blocks a channel still references (a survivor in a live VM still has
 * its end open: they are freed by its close). @return how many were freed. */
int ivsock_block_release_vm(struct ivsock_region *rg, uint8_t vm);
/* Free the blocks of vm's partitions owned by (vm, client) (client < 0: any)
 * that no channel references: blocks a killed process claimed and had not
 * put in a channel yet, or whose channel is gone. @return how many. */
int ivsock_block_release_unreferenced(struct ivsock_region *rg, uint8_t vm, int client);
/* Blocks currently claimed in vm's partitions: all classes / class cls. */
uint32_t ivsock_block_pool_used(const struct ivsock_region *rg, uint8_t vm);
uint32_t ivsock_block_class_used(const struct ivsock_region *rg, uint8_t vm, uint32_t cls);

/* ------------------------ addresses and tuples ------------------------ */

bool ivsock_addr_equal(const struct ivsock_addr *a, const struct ivsock_addr *b);
bool ivsock_addr_is_any(const struct ivsock_addr *a);
/* 127.0.0.0/8 or ::1: a connection inside one VM. */
bool ivsock_addr_is_loopback(const struct ivsock_addr *a);
/* Convert from/to struct sockaddr (AF_INET/AF_INET6); v4-mapped v6 -> v4.
 * @return 0 or -EAFNOSUPPORT. */
struct sockaddr;
int ivsock_addr_from_sockaddr(struct ivsock_addr *a, uint16_t *port,
			      const struct sockaddr *sa, unsigned int salen);
/* Format "1.2.3.4" / "fe80::1"; buf >= 46 bytes. */
const char *ivsock_addr_str(const struct ivsock_addr *a, char *buf, size_t len);
uint32_t ivsock_tuple_hash(const struct ivsock_tuple *t);

#endif
