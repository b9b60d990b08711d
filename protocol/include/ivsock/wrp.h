/* SPDX-License-Identifier: MIT */
/*
 * WRP, the windowed reliable protocol between the ivsockd engines of two
 * hosts (docs/wrp.md): the wire format of a datagram and the session that
 * seals it. No I/O here: callers hand in buffers and get buffers back, so
 * every function is unit-tested and fuzzed without a socket.
 *
 * A datagram on the wire:
 *
 *   | header: 8 x u32 little-endian (32 bytes, authenticated, in clear) |
 *   | body: ciphertext of the payload (len bytes)                        |
 *   | tag: 16 bytes (AEAD over header + body)                            |
 *
 * The header is source 1's eight fields; its checksum field is the AEAD
 * packet number. Handshake datagrams use the same header (type HS_INIT /
 * HS_RESP in flags, pn 0) with their own body (wrp_hs_*), sealed with
 * handshake keys.
 */
#ifndef IVSOCK_WRP_H
#define IVSOCK_WRP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WRP_HDR_SIZE     32u
#define WRP_TAG_SIZE     16u
#define WRP_OVERHEAD     (WRP_HDR_SIZE + WRP_TAG_SIZE)
#define WRP_KEY_SIZE     32u   /* X25519 public and secret keys, AEAD keys */
#define WRP_DGRAM_MAX    65507u /* largest UDP payload (IPv4) */
#define WRP_DOMAIN_MAX   64u   /* trust-domain name, NUL included */

/* flags: bits 0-3 the type, the rest flag bits. */
enum wrp_type {
	WRP_T_DATA    = 1, /* payload = stream bytes [data_start, data_start+len) of channel */
	WRP_T_ACK     = 2, /* payload = wrp_ack_body + SACK ranges */
	WRP_T_HS_INIT = 3, /* handshake, initiator -> responder */
	WRP_T_HS_RESP = 4, /* handshake, responder -> initiator */
	WRP_T_CTRL    = 5, /* payload = a control message of the peer link (directory, set-up) */
	WRP_T_PING    = 6, /* keepalive, payload empty; answered by an ACK */
	WRP_T_MAX     = 6,
};
#define WRP_F_TYPE_MASK  0x0fu
#define WRP_F_ACKREQ     (1u << 4)  /* receiver must answer with an ACK at once */
#define WRP_F_KEYPHASE   (1u << 5)  /* which of the two session keys sealed this */
#define WRP_F_FIN        (1u << 6)  /* DATA: the stream of this direction ends after it */
#define WRP_F_KNOWN      (WRP_F_TYPE_MASK | WRP_F_ACKREQ | WRP_F_KEYPHASE | WRP_F_FIN)

/* The eight header fields, host order (wrp_hdr_encode/decode convert). */
struct wrp_hdr {
	uint32_t seq;        /* datagram sequence number of this peer session and
	                      * direction, from a random start; new for every
	                      * datagram, retransmissions included */
	uint32_t data_start; /* DATA: stream index of the first payload byte, i.e.
	                      * its position in the sender's ring */
	uint32_t len;        /* body length in bytes (the tag not counted) */
	uint32_t ack_seq;    /* largest seq received from the other side */
	uint32_t ack_index;  /* for `channel`: the producer index of the receiver's
	                      * ring, every byte before it is there */
	uint32_t flags;      /* type | WRP_F_* */
	uint32_t channel;    /* the channel number at the receiver of this datagram */
	uint32_t pn;         /* AEAD packet number: the nonce, and the replay window */
};

void wrp_hdr_encode(uint8_t out[WRP_HDR_SIZE], const struct wrp_hdr *h);
/* @return 0, or -EBADMSG for an unknown type or flag bit. */
int wrp_hdr_decode(struct wrp_hdr *h, const uint8_t in[WRP_HDR_SIZE]);
static inline unsigned wrp_type(const struct wrp_hdr *h) { return h->flags & WRP_F_TYPE_MASK; }

/* ---- keys ---------------------------------------------------------------- */

struct wrp_keypair {
	uint8_t pub[WRP_KEY_SIZE];
	uint8_t sec[WRP_KEY_SIZE];
};

/* libsodium's sodium_init(); @return 0 or -EIO. Safe to call many times. */
int wrp_crypto_init(void);
void wrp_keypair_generate(struct wrp_keypair *kp);
/* The public key of a secret key. @return 0 or -EINVAL. */
int wrp_keypair_from_secret(struct wrp_keypair *kp, const uint8_t sec[WRP_KEY_SIZE]);
/* Keys in configuration files: unpadded-free standard base64 of 32 bytes
 * (44 characters). @return 0 or -EINVAL. */
int wrp_key_from_base64(uint8_t key[WRP_KEY_SIZE], const char *b64);
void wrp_key_to_base64(char out[45], const uint8_t key[WRP_KEY_SIZE]);

/* ---- the session ---------------------------------------------------------- */

/* AEAD in use: AES-256-GCM where the CPU has it (both ends must), else
 * ChaCha20-Poly1305 (IETF). Agreed in the handshake. */
enum wrp_aead { WRP_AEAD_CHACHA = 1, WRP_AEAD_AESGCM = 2 };

/* Rekey after this many datagrams or bytes sealed with one key, or this age. */
#define WRP_REKEY_PACKETS (1u << 30)
#define WRP_REKEY_BYTES   (1ull << 36)
#define WRP_REKEY_MS      (120u * 1000u)
#define WRP_REPLAY_WINDOW 2048u   /* packet numbers behind the highest one accepted */

struct wrp_replay {
	uint32_t top;                        /* highest pn accepted */
	bool any;                            /* top is valid */
	uint64_t bits[WRP_REPLAY_WINDOW / 64]; /* bit i: pn (top - i) seen */
};

struct wrp_dir_key {
	uint8_t key[WRP_KEY_SIZE];
	uint64_t packets, bytes;             /* sealed (tx) or opened (rx) with it */
};

struct wrp_session {
	enum wrp_aead aead;
	bool initiator;
	uint64_t established_ms;             /* caller's clock at completion */
	/* Two key phases per direction: current and the next one (rekeying),
	 * selected by WRP_F_KEYPHASE. */
	struct wrp_dir_key tx[2], rx[2];
	unsigned tx_phase;                   /* 0 or 1 */
	uint32_t tx_pn;                      /* next packet number to seal */
	struct wrp_replay replay[2];         /* per rx key phase */
	/* counters */
	uint64_t auth_failures, replays;
};

/*
 * Handshake (docs/wrp.md, "Handshake"): Noise-KK-like over X25519 and
 * BLAKE2b (libsodium crypto_scalarmult, crypto_generichash): both ends know
 * the other's static public key from the configuration. INIT carries the
 * initiator's ephemeral key, a 64-bit timestamp (a replayed INIT older than
 * the last accepted one is refused), the trust-domain name and the AEADs it
 * supports, sealed under keys from es and ss; RESP carries the responder's
 * ephemeral key and its choice, sealed under keys from ee, se, es, ss. The
 * session keys come from the whole transcript; a responder holds no state
 * before a valid INIT.
 */
struct wrp_hs {
	bool initiator;
	uint8_t e_pub[WRP_KEY_SIZE], e_sec[WRP_KEY_SIZE];
	uint8_t chain[WRP_KEY_SIZE];         /* chaining key / transcript hash */
	uint64_t ts;                         /* INIT's timestamp */
	char domain[WRP_DOMAIN_MAX];
	uint32_t aeads;                      /* bitmask of 1 << wrp_aead supported here */
};

/*
 * Initiator: build an INIT datagram into out (room for WRP_HS_INIT_SIZE).
 * ts_ns: a value that grows with every call across restarts (the wall clock
 * in ns). @return its length or -errno.
 */
#define WRP_HS_INIT_SIZE 160u
#define WRP_HS_RESP_SIZE 128u
int wrp_hs_init(struct wrp_hs *hs, const struct wrp_keypair *self,
		const uint8_t peer_pub[WRP_KEY_SIZE], const char *domain,
		uint64_t ts_ns, uint8_t *out, size_t outlen);
/*
 * Responder: check an INIT from a peer whose static key is peer_pub and
 * whose last accepted INIT timestamp is *last_ts (updated); on success
 * writes RESP into out, completes sess, and returns RESP's length.
 * @return -EBADMSG (not an INIT, bad length, failed authentication: wrong
 * key), -EPERM (domain differs), -EALREADY (timestamp not newer: replay),
 * -ENOTSUP (no AEAD in common).
 */
int wrp_hs_respond(const struct wrp_keypair *self, const uint8_t peer_pub[WRP_KEY_SIZE],
		   const char *domain, uint64_t *last_ts, const uint8_t *in, size_t inlen,
		   struct wrp_session *sess, uint64_t now_ms, uint8_t *out, size_t outlen);
/* Initiator: check RESP and complete sess. @return 0, -EBADMSG, -ENOTSUP. */
int wrp_hs_complete(struct wrp_hs *hs, const struct wrp_keypair *self,
		    const uint8_t peer_pub[WRP_KEY_SIZE], const uint8_t *in, size_t inlen,
		    struct wrp_session *sess, uint64_t now_ms);
/* Forget a handshake's secrets (sodium_memzero). */
void wrp_hs_wipe(struct wrp_hs *hs);
void wrp_session_wipe(struct wrp_session *s);

/*
 * Seal one datagram: h (its pn and KEYPHASE are filled in here, len must be
 * plen) and plen bytes of payload from the iovec-like pair (p1,n1)+(p2,n2)
 * (a ring's two contiguous parts; n2 may be 0) into out, which needs
 * WRP_OVERHEAD + plen bytes. The payload is read once, from where it lies:
 * the sender's ring. @return the datagram's length or -errno (-EMSGSIZE,
 * -EKEYEXPIRED when the key must be rotated first).
 */
int wrp_seal(struct wrp_session *s, struct wrp_hdr *h,
	     const uint8_t *p1, size_t n1, const uint8_t *p2, size_t n2,
	     uint8_t *out, size_t outlen);
/*
 * Open one datagram of inlen bytes: decode and check the header, verify and
 * decrypt the body into (d1,m1)+(d2,m2) (the destination ring's two parts,
 * m1+m2 >= h->len; or a private buffer). Nothing is written to the
 * destination unless the tag verifies (decrypt into place only after
 * verification: crypto_aead_*_decrypt_detached writes nothing on failure).
 * Replay checked and recorded only after authentication.
 * @return payload length, -EBADMSG (malformed, failed authentication:
 * counted in auth_failures), -EALREADY (replay: counted in replays),
 * -ENOBUFS (destination smaller than len).
 */
int wrp_open(struct wrp_session *s, struct wrp_hdr *h, const uint8_t *in, size_t inlen,
	     uint8_t *d1, size_t m1, uint8_t *d2, size_t m2);
/*
 * Two steps for receivers that choose the destination from the header:
 * wrp_peek_hdr decodes the clear header (unauthenticated: only to pick
 * where the payload would go), wrp_open then authenticates it.
 */
int wrp_peek_hdr(struct wrp_hdr *h, const uint8_t *in, size_t inlen);

/* Rotation: derive the next key of each direction from the current one
 * (one-way), switch tx to it; rx accepts both phases until the peer's
 * first datagram of the new phase, then drops the old. Either end may
 * start it; the other follows when it sees the new KEYPHASE. */
bool wrp_session_needs_rekey(const struct wrp_session *s, uint64_t now_ms);
void wrp_session_rekey_tx(struct wrp_session *s, uint64_t now_ms);

#endif
