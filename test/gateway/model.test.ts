// Model-based test of the whole policy lifecycle (1.6.0 rules): random sequences of portal commands, time steps,
// p2p control (DNS resources, GOODBYE) and packets in both directions, checked against a small reference model
// that states authorization directly ("some held resource containing the destination permits the packet")
// instead of through filter tables, and tracks DNS-resource NAT sessions by their outside tuple with their
// lifetimes (TTL after the last packet, 60 s while unconfirmed).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { GatewayState, TunAction, TunnelAction } from '../../src/gateway/index.ts';
import type { Authorization, ClientInfo, Filter, GatewayEvent, ResourceDescription } from '../../src/gateway/index.ts';
import { IpPacket, cidrContains, hostCidr, makeGoodbyePacket, parseCidr } from '../../src/ip/index.ts';
import type { Cidr, IpAddr } from '../../src/ip/index.ts';
import { assignedIps, hex, icmpEcho, ip, recordingLogger, tcp, udp } from './support.ts';

const GATEWAY = { ipv4: ip('100.64.0.2'), ipv6: ip('fd00:2021:1111::2') };
const CLIENTS: ClientInfo[] = [0, 1, 2].map((i) => ({
  id: `c000000${i}-0000-0000-0000-000000000000`,
  ipv4: ip(`100.64.0.${10 + i}`),
  ipv6: ip(`fd00:2021:1111::${10 + i}`),
}));
const V4_TEXT = ['100.64.0.10', '100.64.0.11', '100.64.0.12'];
const V6_TEXT = ['fd00:2021:1111::10', 'fd00:2021:1111::11', 'fd00:2021:1111::12'];

const NETWORKS = ['10.0.0.0/8', '10.1.0.0/16', '10.1.2.0/24', '10.1.2.3/32', '192.168.1.0/24', '2001:db8::/32', '2001:db8:1::/48'];
const RESOURCE_IDS = [...NETWORKS.map((_, i) => `e000000${i}-0000-0000-0000-000000000000`), 'e0000007-0000-0000-0000-000000000000', 'e0000008-0000-0000-0000-000000000000'];
const INTERNET_ID = RESOURCE_IDS[7]!;
const DNS_ID = RESOURCE_IDS[8]!;
const DNS_PATTERN = '*.corp';
const DOMAINS = [
  { name: 'a.corp', proxies: ['100.96.0.1'], resolved: ['10.1.2.3'] },
  { name: 'b.corp', proxies: ['100.96.0.2', 'fd00:2021:1111:8000::1'], resolved: ['192.168.1.1', '2001:db8:1::1'] },
  { name: 'x.other', proxies: ['100.96.0.3'], resolved: ['10.2.0.1'] },
  // Takes a.corp's proxy: the client renumbered, everything it announced before is void.
  { name: 'c.corp', proxies: ['100.96.0.1', 'fd00:2021:1111:8000::2'], resolved: ['8.8.4.4'] },
];
const TTL: Record<Protocol, number> = { tcp: 7_440_000, udp: 120_000, icmp: 120_000 };
const UNCONFIRMED_TTL = 60_000;
const CLIENT_PORT = 40000;
const FILTER_SETS: Filter[][] = [
  [],
  [{ protocol: 'tcp', portRangeStart: 80, portRangeEnd: 80 }],
  [{ protocol: 'udp', portRangeStart: 53, portRangeEnd: 53 }],
  [{ protocol: 'icmp' }],
  [
    { protocol: 'tcp', portRangeStart: 1, portRangeEnd: 1000 },
    { protocol: 'udp', portRangeStart: 53, portRangeEnd: 53 },
  ],
  [{ protocol: 'tcp', portRangeStart: 500, portRangeEnd: 400 }],
];
const DESTINATIONS_V4 = ['10.1.2.3', '10.1.2.4', '10.1.3.1', '10.2.0.1', '192.168.1.1', '172.16.0.1', '8.8.8.8', '100.64.0.2', '100.64.0.11', '100.96.0.1', '100.96.0.2', '100.96.0.3'];
const DESTINATIONS_V6 = ['2001:db8:1::1', '2001:db8:2::1', '2001:4860::1', 'fd00:2021:1111::2', 'fd00:2021:1111:8000::1'];
const PORTS = [22, 53, 80, 443, 8080];
type Protocol = 'tcp' | 'udp' | 'icmp';

interface HeldResource {
  readonly filters: readonly Filter[];
  readonly expiresAt: number | undefined;
  /** DNS resources: domain -> resolved IPs (text), as set up by AssignedIps. */
  readonly domains: Map<string, readonly string[]>;
}

interface Session {
  readonly proxy: string;
  lastOutgoing: number;
  /** undefined while nothing came back (unconfirmed). */
  lastIncoming: number | undefined;
}

class ClientModel {
  readonly held = new Map<string, HeldResource>();
  /** proxy -> { domain, real (text) or undefined }; survives resource removal, not the client record. */
  readonly translations = new Map<string, { readonly domain: string; readonly real: string | undefined }>();
  /** Keyed by the outside tuple `${protocol}:${value}:${real}`. */
  readonly sessions = new Map<string, Session>();
  readonly expired = new Set<string>();
}

type Decision =
  | { readonly kind: 'allow' }
  | { readonly kind: 'nat'; readonly real: string }
  | { readonly kind: 'deny' }
  /** ICMP network unreachable (ICMPv6 address unreachable). */
  | { readonly kind: 'unreachable' };

class Model {
  now = 0;
  /** Client index -> state; a client without resources is gone at once (the connection closed with GOODBYE). */
  readonly clients = new Map<number, ClientModel>();

  decide(clientIndex: number, dstText: string, protocol: Protocol, port: number): Decision {
    const client = this.clients.get(clientIndex);
    if (client === undefined) return { kind: 'deny' };
    const dst = ip(dstText);
    if (isGateway(dst)) return protocol === 'icmp' ? { kind: 'allow' } : { kind: 'deny' };
    if (isTunnel(dst)) return { kind: 'deny' };
    if (isProxy(dst)) {
      const translation = client.translations.get(dstText);
      const dns = client.held.get(DNS_ID);
      if (translation === undefined || dns === undefined || !filtersPermit(dns.filters, protocol, port)) return { kind: 'deny' };
      if (translation.real === undefined) return { kind: 'unreachable' };
      return { kind: 'nat', real: translation.real };
    }
    if (client.held.has(INTERNET_ID)) return internetRejects(dst) ? { kind: 'unreachable' } : { kind: 'allow' };
    for (const [id, resource] of client.held) {
      const index = RESOURCE_IDS.indexOf(id);
      if (index >= NETWORKS.length) continue;
      const network = parseCidr(NETWORKS[index]!) as Cidr;
      if (cidrContains(network, dst) && filtersPermit(resource.filters, protocol, port)) return { kind: 'allow' };
    }
    return { kind: 'deny' };
  }

  /** Brings the model to `now`: expired resources (and emptied clients) go, NAT sessions past their end go. */
  advance(now: number): void {
    this.now = now;
    for (const [index, client] of this.clients) {
      for (const [id, resource] of client.held) if (resource.expiresAt !== undefined && resource.expiresAt <= now) client.held.delete(id);
      if (client.held.size === 0) {
        this.clients.delete(index);
        continue;
      }
      for (const [key, session] of client.sessions) {
        if (now >= removeAt(key, session)) {
          client.sessions.delete(key);
          client.expired.add(key);
        }
      }
    }
  }

  /** Drops a client's policy state if it holds nothing. */
  dropIfEmpty(index: number): void {
    if (this.clients.get(index)?.held.size === 0) this.clients.delete(index);
  }
}

function removeAt(key: string, session: Session): number {
  const last = Math.max(session.lastOutgoing, session.lastIncoming ?? -1);
  const ttl = last + TTL[key.split(':')[0] as Protocol];
  return session.lastIncoming === undefined ? Math.min(ttl, session.lastOutgoing + UNCONFIRMED_TTL) : ttl;
}

function isProxy(address: IpAddr): boolean {
  return cidrContains(parseCidr(address.family === 4 ? '100.96.0.0/11' : 'fd00:2021:1111:8000::/107')!, address);
}

function isTunnel(address: IpAddr): boolean {
  return cidrContains(parseCidr(address.family === 4 ? '100.64.0.0/11' : 'fd00:2021:1111::/107')!, address);
}

function isGateway(address: IpAddr): boolean {
  return address.family === 4 ? cidrContains(hostCidr(GATEWAY.ipv4), address) : cidrContains(hostCidr(GATEWAY.ipv6), address);
}

/** Spec 3.5: what the Internet resource does not reach. */
function internetRejects(address: IpAddr): boolean {
  const ranges =
    address.family === 4
      ? ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '127.0.0.0/8', '169.254.0.0/16', '100.64.0.0/10', '224.0.0.0/4', '240.0.0.0/4']
      : ['::1/128', '::ffff:0:0/96', 'fc00::/7', 'fe80::/10', 'ff00::/8'];
  return ranges.some((range) => cidrContains(parseCidr(range)!, address));
}

function natValue(protocol: Protocol, port: number): number {
  return protocol === 'icmp' ? port : CLIENT_PORT;
}

function filtersPermit(filters: readonly Filter[], protocol: Protocol, port: number): boolean {
  if (filters.length === 0) return true;
  return filters.some((f) => {
    if (f.protocol === 'icmp') return protocol === 'icmp';
    return f.protocol === protocol && f.portRangeStart <= f.portRangeEnd && port >= f.portRangeStart && port <= f.portRangeEnd;
  });
}

function describe(index: number, filters: readonly Filter[]): ResourceDescription {
  if (index === 7) return { type: 'internet', id: INTERNET_ID };
  if (index === 8) return { type: 'dns', id: DNS_ID, address: DNS_PATTERN, filters };
  return { type: 'cidr', id: RESOURCE_IDS[index]!, address: NETWORKS[index]!, filters };
}

function buildPacket(src: string, dst: string, protocol: Protocol, port: number, fromResource: boolean): Uint8Array {
  if (protocol === 'icmp') return icmpEcho(src, dst, port, 1, fromResource);
  if (fromResource) return protocol === 'tcp' ? tcp(src, port, dst, CLIENT_PORT, 0x12) : udp(src, port, dst, CLIENT_PORT);
  return protocol === 'tcp' ? tcp(src, CLIENT_PORT, dst, port) : udp(src, CLIENT_PORT, dst, port);
}

/** Checks a gateway-generated prohibited / network-unreachable reply to `original`. */
function assertErrorReply(reply: Uint8Array, original: Uint8Array, code: 'prohibited' | 'unreachable'): void {
  const view = new IpPacket();
  assert.equal(view.parse(reply), undefined);
  const v4 = view.version === 4;
  assert.deepEqual([view.icmpType, view.icmpCode], code === 'prohibited' ? (v4 ? [3, 13] : [1, 1]) : v4 ? [3, 0] : [1, 3]);
  assert.equal(view.ttl, 20, 'TTL 20');
  const addressLength = v4 ? 4 : 16;
  const originalSource = v4 ? 12 : 8;
  const originalDestination = v4 ? 16 : 24;
  assert.equal(hex(reply.subarray(view.sourceOffset, view.sourceOffset + addressLength)), hex(original.subarray(originalDestination, originalDestination + addressLength)));
  assert.equal(hex(reply.subarray(view.destinationOffset, view.destinationOffset + addressLength)), hex(original.subarray(originalSource, originalSource + addressLength)));
  const excerpt = v4 ? Math.min(original.length, 28) : Math.min(original.length, 1232);
  assert.equal(hex(reply.subarray(view.l4Offset + 8)), hex(original.subarray(0, excerpt)));
  assert.ok(view.checksumsValid(), 'checksums');
}

type Real = { readonly state: GatewayState };

function drainEvents(state: GatewayState): GatewayEvent[] {
  const events: GatewayEvent[] = [];
  for (let event = state.pollEvent(); event !== undefined; event = state.pollEvent()) events.push(event);
  return events;
}
type Command = fc.Command<Model, Real>;

class Authorize implements Command {
  constructor(
    readonly client: number,
    readonly resource: number,
    readonly filters: number,
    readonly expiresIn: number | undefined,
  ) {}
  check(): boolean {
    return true;
  }
  run(model: Model, real: Real): void {
    const filters = FILTER_SETS[this.filters]!;
    const expiresAt = this.expiresIn === undefined ? undefined : model.now + this.expiresIn;
    assert.deepEqual(real.state.authorizeFlow(CLIENTS[this.client]!, describe(this.resource, filters), expiresAt, model.now), { ok: true });
    let client = model.clients.get(this.client);
    if (client === undefined) {
      client = new ClientModel();
      model.clients.set(this.client, client);
    }
    const id = RESOURCE_IDS[this.resource]!;
    const domains = client.held.get(id)?.domains ?? new Map<string, readonly string[]>();
    client.held.set(id, { filters: this.resource === 7 ? [] : filters, expiresAt, domains });
  }
  toString(): string {
    return `authorize(c${this.client}, r${this.resource}, f${this.filters}, +${this.expiresIn})`;
  }
}

class Reject implements Command {
  constructor(
    readonly client: number,
    readonly resource: number,
  ) {}
  check(): boolean {
    return true;
  }
  run(model: Model, real: Real): void {
    real.state.rejectAccess(CLIENTS[this.client]!.id, RESOURCE_IDS[this.resource]!, model.now);
    const known = model.clients.has(this.client);
    model.clients.get(this.client)?.held.delete(RESOURCE_IDS[this.resource]!);
    model.dropIfEmpty(this.client);
    const removed = known && !model.clients.has(this.client);
    assert.deepEqual(drainEvents(real.state), removed ? [{ type: 'clientRemoved', clientId: CLIENTS[this.client]!.id, reason: 'noResources' }] : []);
  }
  toString(): string {
    return `reject(c${this.client}, r${this.resource})`;
  }
}

class Update implements Command {
  constructor(
    readonly resource: number,
    readonly filters: number,
  ) {}
  check(): boolean {
    return true;
  }
  run(model: Model, real: Real): void {
    const filters = FILTER_SETS[this.filters]!;
    real.state.resourceUpdated(describe(this.resource, filters));
    if (this.resource === 7) return;
    const id = RESOURCE_IDS[this.resource]!;
    for (const client of model.clients.values()) {
      const existing = client.held.get(id);
      if (existing !== undefined) client.held.set(id, { ...existing, filters });
    }
  }
  toString(): string {
    return `update(r${this.resource}, f${this.filters})`;
  }
}

class Init implements Command {
  constructor(readonly authorizations: readonly (readonly [number, number])[] | undefined) {}
  check(): boolean {
    return true;
  }
  run(model: Model, real: Real): void {
    const list: Authorization[] | undefined = this.authorizations?.map(([c, r]) => ({ clientId: CLIENTS[c]!.id, resourceId: RESOURCE_IDS[r]! }));
    real.state.init(GATEWAY, list, model.now);
    if (this.authorizations === undefined) return;
    for (const [index, client] of model.clients) {
      for (const id of [...client.held.keys()]) {
        if (!this.authorizations.some(([c, r]) => c === index && RESOURCE_IDS[r] === id)) client.held.delete(id);
      }
      model.dropIfEmpty(index);
    }
    for (const event of drainEvents(real.state)) assert.equal(event.type === 'clientRemoved' && event.reason, 'noResources');
  }
  toString(): string {
    return `init(${this.authorizations === undefined ? 'no authorizations key' : JSON.stringify(this.authorizations)})`;
  }
}

class Goodbye implements Command {
  constructor(readonly client: number) {}
  check(): boolean {
    return true;
  }
  run(model: Model, real: Real): void {
    const verdict = real.state.handleTunnelPacket(CLIENTS[this.client]!.id, makeGoodbyePacket(), model.now);
    const known = model.clients.delete(this.client);
    assert.equal(verdict.action, known ? TunnelAction.Consumed : TunnelAction.Drop);
    const events = drainEvents(real.state);
    assert.deepEqual(events, known ? [{ type: 'clientRemoved', clientId: CLIENTS[this.client]!.id, reason: 'goodbye' }] : []);
  }
  toString(): string {
    return `goodbye(c${this.client})`;
  }
}

class AssignIps implements Command {
  constructor(
    readonly client: number,
    readonly domain: number,
  ) {}
  check(): boolean {
    return true;
  }
  run(model: Model, real: Real): void {
    const { name, proxies, resolved } = DOMAINS[this.domain]!;
    const verdict = real.state.handleTunnelPacket(CLIENTS[this.client]!.id, assignedIps(DNS_ID, name, proxies), model.now);
    const client = model.clients.get(this.client);
    if (client === undefined) {
      assert.equal(verdict.action, TunnelAction.Drop);
      return;
    }
    assert.equal(verdict.action, TunnelAction.Consumed);
    for (let event = real.state.pollEvent(); event !== undefined; event = real.state.pollEvent()) {
      if (event.type !== 'resolve') continue;
      const answer = DOMAINS.find((d) => d.name === event.domain)!;
      real.state.handleDnsResolution(event.domain, answer.resolved.map(ip), model.now);
    }
    const reply = real.state.pollClientPacket();
    assert.ok(reply, 'one DomainStatus reply');
    assert.equal(real.state.pollClientPacket(), undefined, 'exactly one');
    assert.equal(reply.clientId, CLIENTS[this.client]!.id);
    const status = (JSON.parse(Buffer.from(reply.packet.subarray(48)).toString()) as { status: string }).status;
    const dns = client.held.get(DNS_ID);
    // The reset on reassignment comes before any other check (1.6.0 `setup_nat`); answers are cached, so the
    // resolution never fails here.
    if (dns !== undefined && proxies.some((proxy) => client.translations.has(proxy) && client.translations.get(proxy)!.domain !== name)) {
      client.translations.clear();
      client.sessions.clear();
      client.expired.clear();
    }
    const active = dns !== undefined && name.endsWith('.corp');
    assert.equal(status, active ? 'Active' : 'Inactive');
    if (!active) return;
    const real4 = resolved.filter((r) => !r.includes(':'));
    const real6 = resolved.filter((r) => r.includes(':'));
    for (const proxy of proxies) client.translations.set(proxy, { domain: name, real: (proxy.includes(':') ? real6 : real4)[0] });
    dns.domains.set(name, resolved);
  }
  toString(): string {
    return `assignIps(c${this.client}, ${DOMAINS[this.domain]!.name})`;
  }
}

class Advance implements Command {
  constructor(readonly ms: number) {}
  check(): boolean {
    return true;
  }
  run(model: Model, real: Real): void {
    const target = model.now + this.ms;
    for (let deadline = real.state.pollTimeout(); deadline !== undefined && deadline <= target; deadline = real.state.pollTimeout()) {
      assert.ok(deadline >= model.now, 'no timeout in the past');
      model.advance(deadline);
      real.state.handleTimeout(deadline);
      for (const event of drainEvents(real.state)) {
        assert.equal(event.type, 'clientRemoved');
        assert.equal(event.type === 'clientRemoved' && event.reason, 'noResources');
      }
    }
    model.advance(target);
  }
  toString(): string {
    return `advance(${this.ms}ms)`;
  }
}

class SendFromClient implements Command {
  constructor(
    readonly client: number,
    readonly spoofed: boolean,
    readonly v6: boolean,
    readonly dst: number,
    readonly protocol: Protocol,
    readonly port: number,
  ) {}
  check(): boolean {
    return true;
  }
  run(model: Model, real: Real): void {
    const dstText = this.v6 ? DESTINATIONS_V6[this.dst % DESTINATIONS_V6.length]! : DESTINATIONS_V4[this.dst % DESTINATIONS_V4.length]!;
    const srcText = this.spoofed ? (this.v6 ? 'fd00:2021:1111::99' : '100.64.9.9') : this.v6 ? V6_TEXT[this.client]! : V4_TEXT[this.client]!;
    const packet = buildPacket(srcText, dstText, this.protocol, this.port, false);
    const original = packet.slice();
    const verdict = real.state.handleTunnelPacket(CLIENTS[this.client]!.id, packet, model.now);
    if (!model.clients.has(this.client)) {
      assert.equal(verdict.action, TunnelAction.Drop, 'no policy state, no traffic');
      return;
    }
    const decision: Decision = this.spoofed ? { kind: 'deny' } : model.decide(this.client, dstText, this.protocol, this.port);
    if (decision.kind === 'allow') {
      assert.equal(verdict.action, TunnelAction.ToTun);
      assert.equal(hex(verdict.packet), hex(original), 'forwarded unchanged');
      return;
    }
    if (decision.kind === 'nat') {
      assert.equal(verdict.action, TunnelAction.ToTun);
      assert.equal(hex(verdict.packet), hex(buildPacket(srcText, decision.real, this.protocol, this.port, false)), 'destination translated, port kept');
      const client = model.clients.get(this.client)!;
      const key = `${this.protocol}:${natValue(this.protocol, this.port)}:${decision.real}`;
      const session = client.sessions.get(key);
      if (session !== undefined) session.lastOutgoing = model.now;
      else client.sessions.set(key, { proxy: dstText, lastOutgoing: model.now, lastIncoming: undefined });
      client.expired.delete(key);
      return;
    }
    assert.equal(verdict.action, TunnelAction.ReplyToClient);
    assertErrorReply(verdict.packet, original, decision.kind === 'unreachable' ? 'unreachable' : 'prohibited');
  }
  toString(): string {
    return `send(c${this.client}${this.spoofed ? ' spoofed' : ''}, ${this.v6 ? 'v6' : 'v4'} dst#${this.dst}, ${this.protocol}/${this.port})`;
  }
}

class ReplyFromResource implements Command {
  constructor(
    readonly client: number,
    readonly v6: boolean,
    readonly src: number,
    readonly protocol: Protocol,
    readonly port: number,
  ) {}
  check(): boolean {
    return true;
  }
  run(model: Model, real: Real): void {
    const srcText = this.v6 ? DESTINATIONS_V6[this.src % DESTINATIONS_V6.length]! : DESTINATIONS_V4[this.src % DESTINATIONS_V4.length]!;
    const dstText = this.v6 ? V6_TEXT[this.client]! : V4_TEXT[this.client]!;
    const packet = buildPacket(srcText, dstText, this.protocol, this.port, true);
    const original = packet.slice();
    const verdict = real.state.handleTunPacket(packet, model.now);
    const client = model.clients.get(this.client);
    const expectDrop = (): void => assert.equal(verdict.action, TunAction.Drop);
    const expectDelivered = (bytes: Uint8Array): void => {
      assert.equal(verdict.action, TunAction.ToClient);
      assert.equal(verdict.clientId, CLIENTS[this.client]!.id, 'only the owner of the destination IP');
      assert.equal(hex(verdict.packet), hex(bytes));
    };
    if (client === undefined) return expectDrop();
    const src = ip(srcText);
    if (isGateway(src)) return expectDelivered(original);
    const key = `${this.protocol}:${natValue(this.protocol, this.port)}:${srcText}`;
    const session = client.sessions.get(key);
    if (session !== undefined) {
      session.lastIncoming = model.now;
      const dns = client.held.get(DNS_ID);
      if (dns === undefined || !filtersPermit(dns.filters, this.protocol, this.port)) return expectDrop();
      return expectDelivered(buildPacket(session.proxy, dstText, this.protocol, this.port, true));
    }
    if (client.expired.has(key)) return expectDrop();
    if (isTunnel(src)) return expectDrop();
    // Filters are stateless: a packet from a proxy IP passes on that proxy's filters, like any reply.
    const decision = model.decide(this.client, srcText, this.protocol, this.port);
    if (decision.kind === 'deny' || decision.kind === 'unreachable') return expectDrop();
    expectDelivered(original);
  }
  toString(): string {
    return `reply(to c${this.client}, ${this.v6 ? 'v6' : 'v4'} src#${this.src}, ${this.protocol}/${this.port})`;
  }
}

const client = fc.integer({ min: 0, max: 2 });
const resource = fc.oneof({ arbitrary: fc.integer({ min: 0, max: 7 }), weight: 2 }, { arbitrary: fc.constant(8), weight: 1 });
const filterIndex = fc.integer({ min: 0, max: FILTER_SETS.length - 1 });
const protocol = fc.constantFrom<Protocol>('tcp', 'udp', 'icmp');
const port = fc.constantFrom(...PORTS);
// Indexes 9 and 10 are the proxies (v4) and 9 % 5 = 4 the v6 proxy; 0 and 4 are the resolved real IPs.
const destination = fc.oneof(fc.nat(20), fc.constantFrom(9, 10));
const source = fc.oneof(fc.nat(20), fc.constantFrom(0, 4));

const commands = [
  fc.tuple(client, resource, filterIndex, fc.option(fc.constantFrom(500, 1500, 3000, 10_000), { nil: undefined })).map(([c, r, f, e]) => new Authorize(c, r, f, e)),
  fc.tuple(client, resource).map(([c, r]) => new Reject(c, r)),
  fc.tuple(resource, filterIndex).map(([r, f]) => new Update(r, f)),
  fc.option(fc.array(fc.tuple(client, resource), { maxLength: 6 }), { nil: undefined, freq: 3 }).map((a) => new Init(a)),
  client.map((c) => new Goodbye(c)),
  fc.tuple(client, fc.integer({ min: 0, max: DOMAINS.length - 1 })).map(([c, d]) => new AssignIps(c, d)),
  fc.constantFrom(100, 500, 1000, 2500, 60_000).map((ms) => new Advance(ms)),
  fc.tuple(client, fc.nat(10).map((n) => n === 0), fc.boolean(), destination, protocol, port).map(([c, s, v6, d, p, n]) => new SendFromClient(c, s, v6, d, p, n)),
  fc.tuple(client, fc.nat(10).map((n) => n === 0), fc.boolean(), destination, protocol, port).map(([c, s, v6, d, p, n]) => new SendFromClient(c, s, v6, d, p, n)),
  fc.tuple(client, fc.boolean(), source, protocol, port).map(([c, v6, s, p, n]) => new ReplyFromResource(c, v6, s, p, n)),
  fc.tuple(client, fc.boolean(), source, protocol, port).map(([c, v6, s, p, n]) => new ReplyFromResource(c, v6, s, p, n)),
];

function runModel(commandArbs: fc.Arbitrary<Command>[], numRuns: number, setup: (model: Model, real: Real) => void = () => undefined): void {
  fc.assert(
    fc.property(fc.commands(commandArbs, { maxCommands: 80, size: 'large' }), (cmds) => {
      const logger = recordingLogger();
      const state = new GatewayState({ logger });
      state.init(GATEWAY, undefined, 0);
      fc.modelRun(() => {
        const model = new Model();
        const real = { state };
        setup(model, real);
        return { model, real };
      }, cmds);
      assert.deepEqual(logger.errors, [], 'no ERROR log');
    }),
    { numRuns },
  );
}

test('the gateway agrees with the reference model on every packet of any command sequence', () => {
  runModel(commands, 300);
});

// One client that always holds the DNS resource (both .corp domains assigned at the start), sometimes the /32
// CIDR one domain resolves to; long idle steps. NAT sessions, their expiry (unconfirmed and confirmed), their
// refresh by replies and the reset when the client renumbers its proxy IPs get exercised often.
const one = fc.constant(0);
const mostlyPermissive = fc.oneof({ arbitrary: fc.constant(0), weight: 3 }, { arbitrary: filterIndex, weight: 1 });
const natPort = fc.constantFrom(53, 80);
const sendToProxy = fc.tuple(one, fc.constant(false), fc.boolean(), fc.constantFrom(9, 10), protocol, natPort).map(([c, s, v6, d, p, n]) => new SendFromClient(c, s, v6, d, p, n));
const replyFromReal = fc.tuple(one, fc.boolean(), fc.constantFrom(0, 4), protocol, natPort).map(([c, v6, s, p, n]) => new ReplyFromResource(c, v6, s, p, n));
const dnsCommands = [
  fc.tuple(one, fc.constant(3), mostlyPermissive, fc.constant(undefined)).map(([c, r, f, e]) => new Authorize(c, r, f, e)),
  fc.tuple(one, fc.constant(3)).map(([c, r]) => new Reject(c, r)),
  fc.tuple(fc.constantFrom(8, 3), mostlyPermissive).map(([r, f]) => new Update(r, f)),
  fc.tuple(one, fc.constantFrom(0, 1, 2, 3)).map(([c, d]) => new AssignIps(c, d)),
  fc.constantFrom(1000, 30_000, 60_000, 60_000).map((ms) => new Advance(ms)),
  fc.constantFrom(1000, 30_000, 60_000, 60_000).map((ms) => new Advance(ms)),
  fc.tuple(one, fc.constant(false), fc.boolean(), fc.constantFrom(0, 4), protocol, natPort).map(([c, s, v6, d, p, n]) => new SendFromClient(c, s, v6, d, p, n)),
  sendToProxy,
  sendToProxy,
  replyFromReal,
  replyFromReal,
  replyFromReal,
];

test('DNS-resource NAT agrees with the model: translation, lifetimes, refresh by replies, renumbering', () => {
  runModel(dnsCommands, 600, (model, real) => {
    new Authorize(0, 8, 0, undefined).run(model, real);
    new AssignIps(0, 0).run(model, real);
    new AssignIps(0, 1).run(model, real);
  });
});
