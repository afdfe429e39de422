import type { SocketAddr } from '../util/socket-addr.ts';
import { sameSocketAddr } from '../util/socket-addr.ts';

/**
 * A local ICE candidate as plain data. `base` is the local socket address the candidate
 * was learned on (for srflx and relay candidates: where the relay's response arrived),
 * which is also the "related address" of its SDP form.
 */
export interface LocalCandidate {
  readonly kind: 'host' | 'srflx' | 'relay';
  readonly address: SocketAddr;
  readonly base: SocketAddr;
}

export function sameCandidate(a: LocalCandidate, b: LocalCandidate): boolean {
  return a.kind === b.kind && sameSocketAddr(a.address, b.address) && sameSocketAddr(a.base, b.base);
}
