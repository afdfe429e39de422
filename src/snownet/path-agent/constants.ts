/** Path agent constants (spec gateway-1.6 §3.9; the reference's path-agent). Milliseconds. */

// Specification constants.

/** Gaps between a pair's first probes, front-loaded to catch a NAT filter the peer opens just after us. */
export const PROBE_BURST_GAPS: readonly number[] = Object.freeze([200, 300, 500]);
/** Steady gap once the burst is spent. */
export const PROBE_INTERVAL = 1_000;
/** Probes a pair sends before it goes quiet, provided a primary exists. */
export const PROBE_BUDGET = 12;
/** Cadence of the primary's probe once its budget is spent: the only keepalive of this mode. */
export const PRIMARY_KEEPALIVE = 25_000;
/** Re-keys without progress that count as distress: the second one clears the primary. */
export const REKEY_DISTRESS_ATTEMPTS = 2;
/** How long an answered initiation's response is replayed for byte-identical copies. */
export const RESPONDER_DEDUP_TTL = 10_000;
/** Fast retransmits of a bootstrap initiation per relay pair, once, from its first fan-out. */
export const BOOTSTRAP_RETRANSMIT_LADDER: readonly number[] = Object.freeze([50, 50, 50, 100, 200, 400, 800, 1600]);
/** Remote candidates kept per kind; the oldest goes first. */
export const MAX_REMOTE_PER_KIND = 6;
/** Peer-reflexive remotes learnt from handshakes and probes. */
export const MAX_PEER_REFLEXIVE = 4;
/** Within one bucket a measured pair displaces the primary only if faster by max(floor, fraction × RTT). */
export const PRIMARY_HYSTERESIS_FRACTION = 0.2;
export const PRIMARY_HYSTERESIS_FLOOR = 10;

// Implementation constants.

/**
 * Local candidates kept per connection. The reference has no cap; the node gives an agent a few
 * host addresses, one srflx per family and one relay candidate per family, so this never binds.
 */
export const MAX_LOCAL_CANDIDATES = 16;

// WireGuard timers of an ICE-less tunnel (the reference's `init_connection`): boringtun's own
// rekey-attempt time, so a relay outage or a roam does not wipe the session before probing finds a
// path again; a passive keepalive 5 s after one-way data; handshake retransmission every 2 s so
// distress shows within a couple of round trips. No persistent keepalive: the primary's probe is one.
export const ICELESS_REKEY_ATTEMPT_TIME = 90_000;
export const ICELESS_KEEPALIVE_TIMEOUT = 5_000;
export const ICELESS_REKEY_TIMEOUT = 2_000;
