import type { SocketAddr } from './socket-addr.ts';

/**
 * A map keyed by an endpoint's value (address text and port), looked up without building a key:
 * per-datagram demultiplexing must not allocate, and the socket layer may hand out different
 * `SocketAddr` objects for the same peer.
 */
export class EndpointMap<V> {
  private readonly byAddress = new Map<string, Map<number, V>>();
  private count = 0;

  get size(): number {
    return this.count;
  }

  get(endpoint: SocketAddr): V | undefined {
    return this.byAddress.get(endpoint.address)?.get(endpoint.port);
  }

  has(endpoint: SocketAddr): boolean {
    return this.get(endpoint) !== undefined;
  }

  set(endpoint: SocketAddr, value: V): void {
    let ports = this.byAddress.get(endpoint.address);
    if (ports === undefined) this.byAddress.set(endpoint.address, (ports = new Map()));
    if (!ports.has(endpoint.port)) this.count++;
    ports.set(endpoint.port, value);
  }

  delete(endpoint: SocketAddr): boolean {
    const ports = this.byAddress.get(endpoint.address);
    if (ports === undefined || !ports.delete(endpoint.port)) return false;
    this.count--;
    if (ports.size === 0) this.byAddress.delete(endpoint.address);
    return true;
  }

  /** Removes the entry only if it maps to `value`. */
  deleteIf(endpoint: SocketAddr, value: V): boolean {
    if (this.get(endpoint) !== value) return false;
    return this.delete(endpoint);
  }

  clear(): void {
    this.byAddress.clear();
    this.count = 0;
  }
}
