/** fast-check arbitraries for worlds and command histories, and the model-based runner. */
import fc from 'fast-check';
import type { ModelFilter, ReferenceModel } from './model.ts';
import {
  DOMAINS,
  INTERNET_PROBES,
  PORTS,
  RELAY_COUNT,
  SIM_MAX_PARTITION_MS,
  V4_HOSTS,
  V4_NETWORKS,
  V6_HOSTS,
  V6_NETWORKS,
  World,
  type InboundSpec,
  type PacketSpec,
  type ResourceConfig,
  type SimCommand,
  type WorldConfig,
  type WorldHooks,
} from './world.ts';

const MAX_CLIENTS = 3;
const MAX_RESOURCES = 6;

const FILTER_PORTS = [0, 22, 53, 80, 443, 1000, 8080, 65535];

const filterArb: fc.Arbitrary<ModelFilter> = fc.oneof(
  fc.record({
    protocol: fc.constantFrom('tcp' as const, 'udp' as const),
    a: fc.constantFrom(...FILTER_PORTS),
    b: fc.constantFrom(...FILTER_PORTS),
  }).map(({ protocol, a, b }) => ({ protocol, start: Math.min(a, b), end: Math.max(a, b) })),
  fc.constant({ protocol: 'icmp' as const }),
);

/** Empty lists (permit all) come up about one time in four. */
export const filtersArb: fc.Arbitrary<readonly ModelFilter[]> = fc.array(filterArb, { minLength: 0, maxLength: 3 });

function resourceArb(index: number): fc.Arbitrary<ResourceConfig> {
  const id = `c7793628-8579-465b-83e3-1a5d4af4db${(0x30 + index).toString(16)}`;
  return fc.oneof(
    { weight: 6, arbitrary: fc.record({ address: fc.constantFrom(...V4_NETWORKS, ...V6_NETWORKS), filters: filtersArb }).map(({ address, filters }) => ({ id, type: 'cidr' as const, address, filters })) },
    { weight: 1, arbitrary: fc.constant({ id, type: 'internet' as const, address: '', filters: [] }) },
    { weight: 3, arbitrary: filtersArb.map((filters) => ({ id, type: 'dns' as const, address: '*.example.com', filters })) },
  );
}

export function worldConfigArb(options: { loss: boolean }): fc.Arbitrary<WorldConfig> {
  return fc.record({
    seed: fc.integer({ min: 0, max: 0x7fffffff }),
    clientNats: fc.array(fc.constantFrom('none' as const, 'port-preserving' as const, 'symmetric' as const), { minLength: 1, maxLength: MAX_CLIENTS }),
    relays: fc.oneof({ weight: 1, arbitrary: fc.constant(0) }, { weight: 4, arbitrary: fc.integer({ min: 1, max: RELAY_COUNT }) }),
    latencyMs: fc.integer({ min: 1, max: 20 }),
    jitterMs: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 30 })),
    loss: options.loss ? fc.constantFrom(0.05, 0.2) : fc.constant(0),
    resources: fc.integer({ min: 2, max: MAX_RESOURCES }).chain((count) => fc.tuple(...Array.from({ length: count }, (_, i) => resourceArb(i)))),
  });
}

const clientArb = fc.nat(MAX_CLIENTS - 1);
const resourceIndexArb = fc.nat(MAX_RESOURCES - 1);

const packetArb: fc.Arbitrary<PacketSpec> = fc.record({
  family: fc.constantFrom(4 as const, 6 as const),
  host: fc.nat(Math.max(V4_HOSTS.length, V6_HOSTS.length) - 1),
  protocol: fc.constantFrom('tcp' as const, 'udp' as const, 'icmp' as const),
  port: fc.constantFrom(...PORTS),
  spoof: fc.constantFrom(0 as const, 0 as const, 0 as const, 0 as const, 0 as const, 1 as const, 2 as const),
  proxy: fc.oneof({ weight: 3, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
});

const inboundArb: fc.Arbitrary<InboundSpec> = fc.record({
  family: fc.constantFrom(4 as const, 6 as const),
  host: fc.nat(Math.max(V4_HOSTS.length, V6_HOSTS.length) - 1),
  protocol: fc.constantFrom('tcp' as const, 'udp' as const, 'icmp' as const),
  port: fc.constantFrom(...PORTS),
  stranger: fc.oneof({ weight: 9, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
});

/** The first alternative is the cheapest: shrinking turns irrelevant commands into short time steps. */
export const commandArb: fc.Arbitrary<SimCommand> = fc.oneof(
  { withCrossShrink: true },
  { weight: 3, arbitrary: fc.oneof(fc.integer({ min: 0, max: 1_500 }), fc.integer({ min: 0, max: 30_000 })).map((ms): SimCommand => ({ kind: 'step', ms })) },
  {
    weight: 6,
    arbitrary: fc.record({ client: clientArb, resource: resourceIndexArb, expiresInSeconds: fc.option(fc.integer({ min: 1, max: 60 }), { freq: 2 }) }).map((c): SimCommand => ({ kind: 'authorize', ...c })),
  },
  { weight: 2, arbitrary: fc.record({ client: clientArb, resource: resourceIndexArb }).map((c): SimCommand => ({ kind: 'reject', ...c })) },
  { weight: 2, arbitrary: fc.record({ resource: resourceIndexArb, filters: filtersArb }).map((c): SimCommand => ({ kind: 'update', ...c })) },
  { weight: 1, arbitrary: fc.constant<SimCommand>({ kind: 'partition' }) },
  // Portal outages shorter than the partition budget (the gateway joins again) and, rarely, longer (it gives up).
  {
    weight: 1,
    arbitrary: fc
      .oneof({ weight: 4, arbitrary: fc.integer({ min: 1_000, max: 50_000 }) }, { weight: 1, arbitrary: fc.integer({ min: SIM_MAX_PARTITION_MS + 1, max: SIM_MAX_PARTITION_MS + 30_000 }) })
      .map((ms): SimCommand => ({ kind: 'portalOutage', ms })),
  },
  { weight: 1, arbitrary: fc.boolean().map((withAuthorizations): SimCommand => ({ kind: 'reinit', withAuthorizations })) },
  { weight: 1, arbitrary: fc.nat(RELAY_COUNT - 1).map((relay): SimCommand => ({ kind: 'relayDown', relay })) },
  { weight: 1, arbitrary: fc.nat(RELAY_COUNT - 1).map((relay): SimCommand => ({ kind: 'relayUp', relay })) },
  { weight: 1, arbitrary: fc.record({ client: clientArb, resource: resourceIndexArb }).map((c): SimCommand => ({ kind: 'roam', ...c })) },
  { weight: 10, arbitrary: fc.record({ client: clientArb, packets: fc.array(packetArb, { minLength: 1, maxLength: 4 }) }).map((c): SimCommand => ({ kind: 'send', ...c })) },
  {
    weight: 4,
    // Mostly the names that resolve and match; now and then with another name's proxy IPs (renumbered).
    arbitrary: fc
      .record({ client: clientArb, resource: resourceIndexArb, domain: fc.constantFrom(0, 0, 1, 1, ...DOMAINS.keys()), renumber: fc.oneof({ weight: 5, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }) })
      .map((c): SimCommand => ({ kind: 'resolve', ...c })),
  },
  { weight: 3, arbitrary: fc.record({ client: clientArb, packets: fc.array(inboundArb, { minLength: 1, maxLength: 3 }) }).map((c): SimCommand => ({ kind: 'inbound', ...c })) },
  { weight: 1, arbitrary: fc.record({ client: clientArb }).map((c): SimCommand => ({ kind: 'goodbye', ...c })) },
  { weight: 1, arbitrary: fc.record({ client: clientArb, resource: resourceIndexArb }).map((c): SimCommand => ({ kind: 'drop', ...c })) },
  {
    weight: 2,
    arbitrary: fc
      .record({ client: clientArb, probes: fc.array(fc.record({ target: fc.nat(INTERNET_PROBES.length - 1), protocol: fc.constantFrom('tcp' as const, 'udp' as const, 'icmp' as const), port: fc.constantFrom(...PORTS) }), { minLength: 1, maxLength: 4 }) })
      .map((c): SimCommand => ({ kind: 'internet', ...c })),
  },
);

class WorldCommand implements fc.Command<ReferenceModel, World> {
  constructor(readonly command: SimCommand) {}
  check(): boolean {
    return true;
  }
  run(_model: ReferenceModel, world: World): void {
    if (process.env['SIM_TRACE']) console.log(`${world.net.now}ms ${this.toString()} ${world.describeClients()}`);
    world.apply(this.command);
    world.assertInvariants();
  }
  toString(): string {
    return JSON.stringify(this.command);
  }
}

export interface HistoryOptions {
  readonly minCommands: number;
  readonly maxCommands: number;
  readonly loss: boolean;
}

export function historyArb(options: HistoryOptions): fc.Arbitrary<{ config: WorldConfig; commands: WorldCommand[] }> {
  return fc.record({
    config: worldConfigArb({ loss: options.loss }),
    commands: fc.array(commandArb.map((c) => new WorldCommand(c)), { minLength: options.minCommands, maxLength: options.maxCommands }),
  });
}

/** Commands made elsewhere (not by `historyArb`) as a history `runHistory` takes. */
export function historyOf(commands: readonly SimCommand[]): WorldCommand[] {
  return commands.map((command) => new WorldCommand(command));
}

/** Runs one history against a fresh world; throws on the first violated invariant. */
export function runHistory(config: WorldConfig, commands: Iterable<WorldCommand>, hooks: WorldHooks = {}): World {
  const world = new World(config, hooks);
  fc.modelRun(() => ({ model: world.model, real: world }), commands);
  return world;
}
