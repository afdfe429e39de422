// A tiny simulated network in virtual time for ICE agents: latency, seeded loss, NATs (port-restricted
// or symmetric) and TURN-like relays (relayed addresses owned by an agent). Not a test file.
import { IceAgent, formatCandidate, parseCandidate } from '../../src/ice/index.ts';
import type { Candidate, IceEvent, IceRole, IceTransmit, StunTiming } from '../../src/ice/index.ts';
import { seededRandom } from '../../src/util/random.ts';
import type { RandomSource } from '../../src/util/random.ts';
import { socketAddr, socketAddrKey } from '../../src/util/socket-addr.ts';
import type { SocketAddr } from '../../src/util/socket-addr.ts';

export type NatKind = 'portRestricted' | 'symmetric';

export interface Nat {
  readonly kind: NatKind;
  readonly publicIp: string;
  /** internal key + (symmetric: remote key) -> public port */
  readonly outbound: Map<string, number>;
  /** public port -> internal address and remotes it sent to */
  readonly inbound: Map<number, { internal: SocketAddr; contacted: Set<string> }>;
  nextPort: number;
}

export interface SimPeer {
  readonly name: string;
  readonly agent: IceAgent;
  readonly host: SocketAddr;
  /** Every address the peer receives on directly (its first host address and any added later). */
  readonly addresses: Set<string>;
  readonly nat: Nat | undefined;
  readonly events: { at: number; event: IceEvent }[];
  readonly sent: { at: number; transmit: IceTransmit }[];
  /** Application datagrams received on the nominated path. */
  readonly received: { at: number; from: SocketAddr; text: string }[];
  alive: boolean;
}

interface InFlight {
  readonly at: number;
  readonly from: SocketAddr;
  readonly to: SocketAddr;
  readonly payload: Uint8Array;
}

export interface PeerOptions {
  readonly role: IceRole;
  readonly host: string;
  readonly nat?: { kind: NatKind; publicIp: string } | undefined;
  readonly timing?: StunTiming | undefined;
  readonly checkPacing?: number | undefined;
  readonly resolveRoleConflicts?: boolean | undefined;
  readonly ufrag?: string;
  readonly password?: string;
}

export class SimNet {
  now = 0;
  latency = 10;
  lossRate = 0;
  readonly peers: SimPeer[] = [];
  private readonly relayed = new Map<string, SimPeer>();
  private inFlight: InFlight[] = [];
  private readonly rng: RandomSource;
  private nextRelayPort = 50_000;

  constructor(seed = 1) {
    this.rng = seededRandom(seed);
  }

  addPeer(name: string, options: PeerOptions): SimPeer {
    const nat: Nat | undefined =
      options.nat === undefined
        ? undefined
        : { ...options.nat, outbound: new Map(), inbound: new Map(), nextPort: 40_000 };
    const agent = new IceAgent({
      role: options.role,
      local: { ufrag: options.ufrag ?? `${name}uf`, password: options.password ?? `${name}-password-0123456789` },
      rng: seededRandom(this.rng.u32()),
      timing: options.timing,
      checkPacing: options.checkPacing,
      resolveRoleConflicts: options.resolveRoleConflicts,
    });
    const peer: SimPeer = {
      name,
      agent,
      host: socketAddr(options.host, 52625),
      addresses: new Set([socketAddrKey(socketAddr(options.host, 52625))]),
      nat,
      events: [],
      sent: [],
      received: [],
      alive: true,
    };
    this.peers.push(peer);
    return peer;
  }

  /** Exchanges credentials both ways. */
  introduce(a: SimPeer, b: SimPeer): void {
    a.agent.setRemoteCredentials(b.agent.localCredentials);
    b.agent.setRemoteCredentials(a.agent.localCredentials);
  }

  addHost(peer: SimPeer, ip?: string): Candidate {
    const address = ip === undefined ? peer.host : socketAddr(ip, 52625);
    peer.addresses.add(socketAddrKey(address));
    const candidate = peer.agent.addLocalHostCandidate(address);
    if (candidate === undefined) throw new Error('host candidate refused');
    this.touch(peer);
    return candidate;
  }

  /** Allocates a relayed address on `relayIp` for `peer` and adds the relay candidate. */
  addRelay(peer: SimPeer, relayIp: string): Candidate {
    const relayedAddr = socketAddr(relayIp, this.nextRelayPort++);
    this.relayed.set(socketAddrKey(relayedAddr), peer);
    const candidate = peer.agent.addLocalRelayCandidate(relayedAddr, socketAddr(relayIp, 3478));
    if (candidate === undefined) throw new Error('relay candidate refused');
    this.touch(peer);
    return candidate;
  }

  /** The srflx candidate a STUN server would report for a port-preserving mapping. */
  srflx(peer: SimPeer): Candidate {
    if (peer.nat === undefined) throw new Error('no NAT');
    return peer.agent.serverReflexiveCandidate(socketAddr(peer.nat.publicIp, peer.host.port), peer.host);
  }

  /** Signals candidate strings as the portal would: through text. */
  trickle(to: SimPeer, candidates: readonly Candidate[]): void {
    for (const candidate of candidates) {
      const parsed = parseCandidate(formatCandidate(candidate));
      if (typeof parsed === 'string') throw new Error(`unparsable candidate: ${parsed}`);
      to.agent.addRemoteCandidate(parsed);
    }
    this.touch(to);
  }

  /** After a command, the driver lets the agent act at the current time (as snownet does). */
  touch(peer: SimPeer): void {
    if (peer.alive) peer.agent.handleTimeout(this.now);
  }

  /** Runs until `until` (virtual ms), delivering datagrams and timeouts. */
  runUntil(until: number): void {
    for (let steps = 0; ; steps++) {
      if (steps > 200_000) throw new Error('simulation did not settle');
      this.drainAll();
      let next = Infinity;
      for (const packet of this.inFlight) next = Math.min(next, packet.at);
      for (const peer of this.peers) {
        if (!peer.alive) continue;
        const timeout = peer.agent.pollTimeout();
        if (timeout !== undefined) {
          if (timeout < this.now) throw new Error(`${peer.name} asked for a time in the past`);
          next = Math.min(next, timeout);
        }
      }
      if (next > until) {
        this.now = until;
        return;
      }
      this.now = next;
      const due = this.inFlight.filter((p) => p.at <= this.now);
      this.inFlight = this.inFlight.filter((p) => p.at > this.now);
      for (const packet of due) this.deliver(packet);
      for (const peer of this.peers) {
        if (!peer.alive) continue;
        const timeout = peer.agent.pollTimeout();
        if (timeout !== undefined && timeout <= this.now) peer.agent.handleTimeout(this.now);
      }
    }
  }

  /** Runs until `predicate` holds or `limit` passes; returns the time or undefined. */
  runUntilTrue(predicate: () => boolean, limit: number, step = 5): number | undefined {
    while (this.now < limit) {
      this.runUntil(Math.min(this.now + step, limit));
      if (predicate()) return this.now;
    }
    return undefined;
  }

  /** Sends an application datagram from `peer` on its nominated path. */
  sendData(peer: SimPeer, text: string): boolean {
    const path = peer.agent.nominatedPath;
    if (path === undefined) return false;
    const payload = new TextEncoder().encode(text);
    const transmit: IceTransmit =
      path.kind === 'direct'
        ? { kind: 'direct', source: path.source, destination: path.destination, payload }
        : { kind: 'relay', relay: path.relay, relayed: path.relayed, destination: path.destination, payload };
    this.send(peer, transmit);
    return true;
  }

  private drainAll(): void {
    for (const peer of this.peers) {
      for (let transmit = peer.agent.pollTransmit(); transmit; transmit = peer.agent.pollTransmit()) {
        peer.sent.push({ at: this.now, transmit });
        if (peer.alive) this.send(peer, transmit);
      }
      for (let event = peer.agent.pollEvent(); event; event = peer.agent.pollEvent()) {
        peer.events.push({ at: this.now, event });
      }
    }
  }

  private send(peer: SimPeer, transmit: IceTransmit): void {
    if (this.lossRate > 0 && this.rng.float() < this.lossRate) return;
    if (transmit.kind === 'relay') {
      this.inFlight.push({ at: this.now + 2 * this.latency, from: transmit.relayed, to: transmit.destination, payload: transmit.payload });
      return;
    }
    const from = peer.nat === undefined ? transmit.source : this.mapOutbound(peer.nat, transmit.source, transmit.destination);
    this.inFlight.push({ at: this.now + this.latency, from, to: transmit.destination, payload: transmit.payload });
  }

  private mapOutbound(nat: Nat, internal: SocketAddr, remote: SocketAddr): SocketAddr {
    const key = nat.kind === 'symmetric' ? `${socketAddrKey(internal)}>${socketAddrKey(remote)}` : socketAddrKey(internal);
    let port = nat.outbound.get(key);
    if (port === undefined) {
      port = nat.kind === 'symmetric' ? nat.nextPort++ : internal.port;
      nat.outbound.set(key, port);
      nat.inbound.set(port, { internal, contacted: new Set() });
    }
    nat.inbound.get(port)!.contacted.add(socketAddrKey(remote));
    return socketAddr(nat.publicIp, port);
  }

  private deliver(packet: InFlight): void {
    const relayOwner = this.relayed.get(socketAddrKey(packet.to));
    if (relayOwner !== undefined) {
      this.receive(relayOwner, packet.payload, packet.from, packet.to);
      return;
    }
    for (const peer of this.peers) {
      if (peer.nat !== undefined && peer.nat.publicIp === packet.to.address) {
        const mapping = peer.nat.inbound.get(packet.to.port);
        if (mapping === undefined || !mapping.contacted.has(socketAddrKey(packet.from))) return;
        this.receive(peer, packet.payload, packet.from, mapping.internal);
        return;
      }
      if (peer.nat === undefined && peer.addresses.has(socketAddrKey(packet.to))) {
        this.receive(peer, packet.payload, packet.from, packet.to);
        return;
      }
    }
  }

  private receive(peer: SimPeer, payload: Uint8Array, from: SocketAddr, to: SocketAddr): void {
    if (!peer.alive) return;
    if (peer.agent.handleInput(payload, from, to, this.now)) return;
    peer.received.push({ at: this.now, from, text: new TextDecoder().decode(payload) });
  }
}

export function nominations(peer: SimPeer): Extract<IceEvent, { kind: 'nominated' }>[] {
  const out: Extract<IceEvent, { kind: 'nominated' }>[] = [];
  for (const { event } of peer.events) if (event.kind === 'nominated') out.push(event);
  return out;
}

export function lastNomination(peer: SimPeer): Extract<IceEvent, { kind: 'nominated' }> | undefined {
  return nominations(peer).at(-1);
}

export function states(peer: SimPeer): string[] {
  const out: string[] = [];
  for (const { event } of peer.events) if (event.kind === 'stateChanged') out.push(event.state);
  return out;
}

/** The 5-tuple a path uses, as "local -> remote", comparable across the two peers when mirrored. */
export function pathText(event: Extract<IceEvent, { kind: 'nominated' }>): string {
  return `${socketAddrKey(event.local.address)} -> ${socketAddrKey(event.remote.address)}`;
}
