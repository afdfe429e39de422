import type { SocketAddr } from './socket-addr.ts';

/** The addresses of every empty map: read, never written (`set` gives a map its own first). */
const NO_ADDRESSES: ReadonlyMap<string, PortEntry<unknown>> = new Map();

/**
 * A map keyed by an endpoint's value (address text and port), looked up without building a key:
 * per-datagram demultiplexing must not allocate, and the socket layer may hand out different
 * `SocketAddr` objects for the same peer.
 *
 * An address with one port (the usual case: one peer per public address) holds that port's entry
 * itself; only an address with several ports gets a map of its ports.
 */
export class EndpointMap<V> {
  private byAddress = NO_ADDRESSES as Map<string, PortEntry<V> | Map<number, V>>;
  private count = 0;

  get size(): number {
    return this.count;
  }

  get(endpoint: SocketAddr): V | undefined {
    const ports = this.byAddress.get(endpoint.address);
    if (ports === undefined) return undefined;
    if (ports instanceof PortEntry) return ports.port === endpoint.port ? ports.value : undefined;
    return ports.get(endpoint.port);
  }

  has(endpoint: SocketAddr): boolean {
    return this.get(endpoint) !== undefined;
  }

  set(endpoint: SocketAddr, value: V): void {
    if (this.byAddress === NO_ADDRESSES) this.byAddress = new Map();
    const { address, port } = endpoint;
    const ports = this.byAddress.get(address);
    if (ports === undefined) {
      this.byAddress.set(address, new PortEntry(port, value));
      this.count++;
      return;
    }
    if (ports instanceof PortEntry) {
      if (ports.port === port) {
        ports.value = value;
        return;
      }
      this.byAddress.set(
        address,
        new Map([
          [ports.port, ports.value],
          [port, value],
        ]),
      );
      this.count++;
      return;
    }
    if (!ports.has(port)) this.count++;
    ports.set(port, value);
  }

  delete(endpoint: SocketAddr): boolean {
    const { address, port } = endpoint;
    const ports = this.byAddress.get(address);
    if (ports === undefined) return false;
    if (ports instanceof PortEntry) {
      if (ports.port !== port) return false;
      this.byAddress.delete(address);
    } else {
      if (!ports.delete(port)) return false;
      if (ports.size === 1) {
        for (const [otherPort, otherValue] of ports) this.byAddress.set(address, new PortEntry(otherPort, otherValue));
      }
    }
    this.count--;
    if (this.count === 0) this.byAddress = NO_ADDRESSES as Map<string, PortEntry<V>>;
    return true;
  }

  /** Removes the entry only if it maps to `value`. */
  deleteIf(endpoint: SocketAddr, value: V): boolean {
    if (this.get(endpoint) !== value) return false;
    return this.delete(endpoint);
  }

  clear(): void {
    this.byAddress = NO_ADDRESSES as Map<string, PortEntry<V>>;
    this.count = 0;
  }
}

class PortEntry<V> {
  constructor(
    readonly port: number,
    public value: V,
  ) {}
}
