import type { SocketAddr } from '../util/socket-addr.ts';

/** A TURN relay as the portal announces it, after merging its IPv4 and IPv6 entries. */
export interface RelayServer {
  readonly id: string;
  readonly v4: SocketAddr | undefined;
  readonly v6: SocketAddr | undefined;
  readonly username: string;
  readonly password: string;
}

/** One `turn` entry of `init.relays` or `relays_presence.connected`. */
export interface TurnRelayEntry {
  readonly id: string;
  readonly addr: SocketAddr;
  readonly username: string;
  readonly password: string;
}

/**
 * Merges consecutive entries of one relay id (one IPv4, one IPv6 address) into one dual-stack
 * relay, as the reference does. Non-consecutive duplicates stay separate entries; the later one
 * then replaces the earlier one when applied.
 */
export function mergeRelayEntries(entries: readonly TurnRelayEntry[]): RelayServer[] {
  const merged: RelayServer[] = [];
  for (const entry of entries) {
    const previous = merged[merged.length - 1];
    const slot = entry.addr.family === 4 ? 'v4' : 'v6';
    if (previous !== undefined && previous.id === entry.id && previous[slot] === undefined) {
      merged[merged.length - 1] = { ...previous, [slot]: entry.addr };
      continue;
    }
    merged.push({
      id: entry.id,
      v4: slot === 'v4' ? entry.addr : undefined,
      v6: slot === 'v6' ? entry.addr : undefined,
      username: entry.username,
      password: entry.password,
    });
  }
  return merged;
}

/** Same addresses and credentials: an existing allocation can be kept. */
export function sameRelayServer(a: RelayServer, b: RelayServer): boolean {
  return (
    a.username === b.username &&
    a.password === b.password &&
    sameOptionalAddr(a.v4, b.v4) &&
    sameOptionalAddr(a.v6, b.v6)
  );
}

function sameOptionalAddr(a: SocketAddr | undefined, b: SocketAddr | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.address === b.address && a.port === b.port;
}
