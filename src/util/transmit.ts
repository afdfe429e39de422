import type { SocketAddr } from './socket-addr.ts';

/**
 * A datagram a state machine wants sent. `source` pins the local address to send from
 * (needed when the host has several addresses); undefined lets the kernel choose.
 */
export interface Transmit {
  readonly source: SocketAddr | undefined;
  readonly destination: SocketAddr;
  readonly payload: Uint8Array;
  /** The ECN codepoint for the datagram's IP header (absent: Not-ECT). WireGuard data carries its inner packet's. */
  readonly ecn?: number;
}
