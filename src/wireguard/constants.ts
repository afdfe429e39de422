// WireGuard protocol constants (whitepaper §6, and boringtun as configured by Firezone 1.4.13).

// Specification timers, in milliseconds.
export const REKEY_AFTER_TIME = 120_000;
export const REJECT_AFTER_TIME = 180_000;
export const REKEY_TIMEOUT = 5_000;
export const KEEPALIVE_TIMEOUT = 10_000;
export const COOKIE_EXPIRATION = 120_000;
/** boringtun's default is 90 s; Firezone overrides it to 15 s. */
export const REKEY_ATTEMPT_TIME = 15_000;
/** A handshake retransmission is delayed by a uniform jitter in [0, this). */
export const REKEY_TIMEOUT_JITTER_MAX = 334;
/** The initiator rekeys on receipt once a session is this old (180 − 10 − 5 s). */
export const REKEY_ON_RECEIVE_AGE = REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT;
/** Everything is wiped when no new session appeared for this long. */
export const WIPE_AFTER_TIME = REJECT_AFTER_TIME * 3;

// Specification message limits. Counters are JS numbers, so anything at or above 2^53 is refused.
export const REKEY_AFTER_MESSAGES = 2 ** 60;
export const REJECT_AFTER_MESSAGES = Number.MAX_SAFE_INTEGER;

// Implementation constants.
export const MAX_QUEUED_PACKETS = 256;
export const SESSION_RING_SIZE = 8;
/** Replay window, in packets: a 2048-bit ring minus one word of slack (RFC 6479). */
export const REPLAY_WINDOW = 2048 - 32;
export const HANDSHAKE_RATE_LIMIT = 100;
export const RATE_LIMIT_RESET_INTERVAL = 1_000;
export const COOKIE_SECRET_ROTATION = 128_000;
/** Largest inner IP packet (Firezone MAX_IP_SIZE). */
export const MAX_INNER_PACKET = 1280;

// Message types.
export const MESSAGE_INITIATION = 1;
export const MESSAGE_RESPONSE = 2;
export const MESSAGE_COOKIE_REPLY = 3;
export const MESSAGE_TRANSPORT = 4;

// Message sizes.
export const INITIATION_SIZE = 148;
export const RESPONSE_SIZE = 92;
export const COOKIE_REPLY_SIZE = 64;
export const TRANSPORT_HEADER_SIZE = 16;
export const AEAD_TAG_SIZE = 16;
export const TRANSPORT_MIN_SIZE = TRANSPORT_HEADER_SIZE + AEAD_TAG_SIZE;
export const TRANSPORT_OVERHEAD = TRANSPORT_MIN_SIZE;

// Field offsets.
export const OFFSET_TYPE = 0;
export const OFFSET_SENDER = 4;
export const INITIATION_OFFSET_EPHEMERAL = 8;
export const INITIATION_OFFSET_STATIC = 40;
export const INITIATION_OFFSET_TIMESTAMP = 88;
export const INITIATION_OFFSET_MAC1 = 116;
export const INITIATION_OFFSET_MAC2 = 132;
export const RESPONSE_OFFSET_RECEIVER = 8;
export const RESPONSE_OFFSET_EPHEMERAL = 12;
export const RESPONSE_OFFSET_EMPTY = 44;
export const RESPONSE_OFFSET_MAC1 = 60;
export const RESPONSE_OFFSET_MAC2 = 76;
export const COOKIE_OFFSET_RECEIVER = 4;
export const COOKIE_OFFSET_NONCE = 8;
export const COOKIE_OFFSET_COOKIE = 32;
export const TRANSPORT_OFFSET_RECEIVER = 4;
export const TRANSPORT_OFFSET_COUNTER = 8;
export const TRANSPORT_OFFSET_DATA = 16;

export const KEY_SIZE = 32;
export const MAC_SIZE = 16;
export const TIMESTAMP_SIZE = 12;
export const COOKIE_NONCE_SIZE = 24;

export const CONSTRUCTION = 'Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s';
export const IDENTIFIER = 'WireGuard v1 zx2c4 Jason@zx2c4.com';
export const LABEL_MAC1 = 'mac1----';
export const LABEL_COOKIE = 'cookie--';
