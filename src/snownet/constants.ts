/** Snownet timing and size constants (spec connectivity appendix). Milliseconds. */
export const MAX_DATAGRAM_PAYLOAD = 1316;
export const CANDIDATE_TIMEOUT = 10_000;
export const DISCONNECT_TIMEOUT = 2_000;
export const MAX_IDLE = 20_000;
export const MAX_BUFFERED_WHILE_CONNECTING = 128;
/** Room in front of every WireGuard datagram for a ChannelData header. */
export const CHANNEL_DATA_HEADROOM = 4;
/** WireGuard gives up a handshake after this long in ICE mode (1.6.0 `WG_REKEY_ATTEMPT_TIME`; the protocol's is 90 s). */
export const WG_REKEY_ATTEMPT_TIME = 20_000;
/** Optimistic server-reflexive candidates made per remote candidate signalled (1.6.0 takes 2). */
export const MAX_OPTIMISTIC_CANDIDATES_PER_SIGNAL = 2;
