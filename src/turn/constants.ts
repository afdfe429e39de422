// TURN client timing and limits (connectivity spec §4 and its appendix). Milliseconds.

/** First retransmission of a request after this long; each later interval is 1.5 times the previous. */
export const REQUEST_TIMEOUT = 1_000;
export const REQUEST_BACKOFF_MULTIPLIER = 1.5;
/** A request is given up at its first deadline at or after this long since its first send. */
export const REQUEST_MAX_ELAPSED = 8_000;
/** BINDING keepalive to the chosen relay socket while an allocation exists. */
export const BINDING_INTERVAL = 25_000;

export const CHANNEL_LIFETIME = 600_000;
/** After its lifetime a channel's number and peer stay reserved this long (RFC 8656 §12). */
export const CHANNEL_REBIND_COOLDOWN = 300_000;
/** A channel with traffic is re-bound once it is this old. */
export const CHANNEL_REFRESH_AFTER = CHANNEL_LIFETIME / 2;
export const FIRST_CHANNEL = 0x4000;
export const LAST_CHANNEL = 0x4fff;
/** Channel binds requested before the allocation exists are kept, oldest dropped first. */
export const MAX_BUFFERED_CHANNEL_BINDS = 100;

/** RFC 8656 §9: permissions last 300 s; we refresh them a minute early. */
export const PERMISSION_LIFETIME = 300_000;
export const PERMISSION_REFRESH_AFTER = 240_000;

/** After a REFRESH fails with an unhandled error, try again this much later (the reference retries at once). */
export const REFRESH_RETRY_AFTER_ERROR = 5_000;

export const DEFAULT_REALM = 'firezone';
