import { isIPv4, isIPv6 } from 'node:net';

/** A UDP/TCP endpoint. `address` is the canonical textual form Node uses (no brackets, no zone). */
export interface SocketAddr {
  readonly address: string;
  readonly port: number;
  readonly family: 4 | 6;
}

export function socketAddr(address: string, port: number): SocketAddr {
  const family = isIPv4(address) ? 4 : isIPv6(address) ? 6 : undefined;
  if (family === undefined) throw new TypeError(`not an IP address: ${address}`);
  if (!Number.isInteger(port) || port < 0 || port > 0xffff) throw new RangeError(`not a port: ${port}`);
  return { address, port, family };
}

/** A stable map key for an endpoint: `1.2.3.4:5` or `[::1]:5`. Also the display form. */
export function socketAddrKey(addr: SocketAddr): string {
  return addr.family === 6 ? `[${addr.address}]:${addr.port}` : `${addr.address}:${addr.port}`;
}

/** Parses `1.2.3.4:5` or `[::1]:5`; returns undefined when malformed. */
export function parseSocketAddr(text: string): SocketAddr | undefined {
  const match = /^\[([^\]]+)\]:(\d{1,5})$/.exec(text) ?? /^([^:[\]]+):(\d{1,5})$/.exec(text);
  if (!match) return undefined;
  const port = Number(match[2]);
  const address = match[1]!;
  if (port > 0xffff) return undefined;
  if (text.startsWith('[') ? !isIPv6(address) : !isIPv4(address)) return undefined;
  return socketAddr(address, port);
}

export function sameSocketAddr(a: SocketAddr, b: SocketAddr): boolean {
  return a.port === b.port && a.address === b.address;
}
