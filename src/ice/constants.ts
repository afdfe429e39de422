// ICE constants. Spec values come from RFC 8445; implementation values are the reference's (str0m as
// configured by snownet), so both sides of a Firezone connection compute the same priorities and timeouts.
import type { Millis } from './stun-timing.ts';

/** The only component: RTP/RTCP multiplexing is not a thing here. */
export const COMPONENT_ID = 1;

/** Type preferences (RFC 8445 §5.1.2.1) with str0m's values; relay is 2, not RFC's 0. */
export const TYPE_PREFERENCE = {
  host: 126,
  prflx: 110,
  srflx: 100,
  relay: 2,
} as const;

/** First local preference per kind and family; each further candidate of that kind and family takes 2 less. */
export const LOCAL_PREFERENCE_START = {
  host: { 4: 65534, 6: 65535 },
  prflx: { 4: 49150, 6: 49151 },
  srflx: { 4: 32766, 6: 32767 },
  relay: { 4: 16382, 6: 16383 },
} as const;

/** Local preference of candidates that never enter an agent (signalled srflx, remote candidates). */
export const FALLBACK_LOCAL_PREFERENCE = { 4: 65534, 6: 65535 } as const;

/** A relayed address of another family than the socket used to reach the relay costs this much preference. */
export const CROSS_FAMILY_RELAY_PENALTY = 1000;

/** Pairs beyond this are dropped, lowest priority first. */
export const MAX_CANDIDATE_PAIRS = 100;

/** Foundation str0m gives remote peer-reflexive candidates until the real one is trickled. */
export const PRFLX_FOUNDATION = 'tmp_prflx';

/** Pacing between checks (RFC 8445 Ta). The reference uses none. */
export const DEFAULT_CHECK_PACING: Millis = 0;

/**
 * Unanswered attempts remembered per pair for matching late responses; older ones are forgotten.
 * With retransmissions doubling from 250 ms, the last four span at least 3.75 s of round trip while
 * a pair is being checked and 75 s once it is idle (25 s apart). A pair keeps them in as many fields
 * (32 bits of each transaction id; the node routes a response by the tag in the rest), so changing
 * this means changing `Pair` in agent.ts.
 */
export const MAX_REMEMBERED_ATTEMPTS = 4;

/** str0m's string limit when parsing STUN (USERNAME). */
export const MAX_STUN_STRING_BYTES = 128;
