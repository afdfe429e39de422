/**
 * Where a connected client's memory goes on the gateway: builds the fleet of bench:scale (N clients,
 * connected, then idle), writes a heap snapshot, lets the gateway go, writes another, and groups every
 * object of the first that is gone from the second (what the gateway held) by the nearest class
 * instance that owns it and the field it hangs from (e.g. `IceAgent.transactions`). Per client.
 * Usage: npm run bench:scale-heap [-- --clients 1000 --idle-seconds 90 --top 40]
 */
import v8 from 'node:v8';
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { configureLogging, LogFilter } from '../src/log/index.ts';
import { Fleet } from '../test/support/fleet.ts';
import { dataPathMode, transportCipherFor } from '../src/runtime/data-path.ts';

const { values } = parseArgs({
  options: {
    clients: { type: 'string', default: '1000' },
    'idle-seconds': { type: 'string', default: '90' },
    top: { type: 'string', default: '40' },
  },
});
const CLIENTS = Number(values.clients);
const gc = globalThis.gc;
if (gc === undefined) throw new Error('run with node --expose-gc (npm run bench:scale-heap does)');
configureLogging({ filter: LogFilter.parse('off') });

interface Snapshot {
  nodeFields: string[];
  edgeFields: string[];
  nodeTypes: string[];
  edgeTypes: string[];
  strings: string[];
  nodes: number[];
  edges: number[];
}

function load(file: string): Snapshot {
  const raw = JSON.parse(readFileSync(file, 'utf8')) as {
    snapshot: { meta: { node_fields: string[]; edge_fields: string[]; node_types: [string[]]; edge_types: [string[]] } };
    strings: string[];
    nodes: number[];
    edges: number[];
  };
  const meta = raw.snapshot.meta;
  return { nodeFields: meta.node_fields, edgeFields: meta.edge_fields, nodeTypes: meta.node_types[0], edgeTypes: meta.edge_types[0], strings: raw.strings, nodes: raw.nodes, edges: raw.edges };
}

const GENERIC = new Set(['Object', 'Array', 'Map', 'Set', 'ArrayBuffer', 'Uint8Array', 'Uint32Array', 'Buffer', 'system / Context', '']);

function report(a: Snapshot, b: Snapshot): void {
  const idOf = b.nodeFields.indexOf('id');
  const kept = new Set<number>();
  for (let i = 0; i < b.nodes.length; i += b.nodeFields.length) kept.add(b.nodes[i + idOf]!);
  const width = a.nodeFields.length;
  const [typeAt, nameAt, idAt, sizeAt, edgeCountAt] = ['type', 'name', 'id', 'self_size', 'edge_count'].map((f) => a.nodeFields.indexOf(f)) as [number, number, number, number, number];
  const edgeWidth = a.edgeFields.length;
  const [edgeTypeAt, edgeNameAt, edgeToAt] = ['type', 'name_or_index', 'to_node'].map((f) => a.edgeFields.indexOf(f)) as [number, number, number];
  const count = a.nodes.length / width;
  const held = new Uint8Array(count);
  for (let k = 0; k < count; k++) if (!kept.has(a.nodes[k * width + idAt]!)) held[k] = 1;
  // The first strong edge to each held object names its retainer (snapshots list edges in node order).
  const retainer = new Int32Array(count).fill(-1);
  const field: string[] = new Array<string>(count);
  let edge = 0;
  for (let k = 0; k < count; k++) {
    const edges = a.nodes[k * width + edgeCountAt]!;
    for (let j = 0; j < edges; j++, edge += edgeWidth) {
      const to = a.edges[edge + edgeToAt]! / width;
      const type = a.edgeTypes[a.edges[edge + edgeTypeAt]!]!;
      if (type === 'weak' || held[to] === 0 || retainer[to] !== -1) continue;
      retainer[to] = k;
      field[to] = type === 'element' || type === 'hidden' ? `[${type}]` : a.strings[a.edges[edge + edgeNameAt]!]!;
    }
  }
  const owners = new Map<string, { objects: number; bytes: number }>();
  let total = 0;
  for (let k = 0; k < count; k++) {
    if (held[k] === 0) continue;
    const bytes = a.nodes[k * width + sizeAt]!;
    total += bytes;
    let owner = '(unowned)';
    let path = field[k];
    for (let x = retainer[k]!, depth = 0; x >= 0 && depth < 12; depth++) {
      const type = a.nodeTypes[a.nodes[x * width + typeAt]!]!;
      const name = a.strings[a.nodes[x * width + nameAt]!]!;
      if (type === 'object' && !GENERIC.has(name)) {
        owner = `${name}.${path}`;
        break;
      }
      path = field[x];
      x = retainer[x]!;
    }
    const entry = owners.get(owner) ?? { objects: 0, bytes: 0 };
    entry.objects++;
    entry.bytes += bytes;
    owners.set(owner, entry);
  }
  console.log(`${CLIENTS} clients: the gateway held ${(total / CLIENTS).toFixed(0)} B per client (heap snapshot sizes, ArrayBuffer contents included)`);
  console.log('B/client  objects/client  owner.field');
  for (const [owner, { objects, bytes }] of [...owners].sort((x, y) => y[1].bytes - x[1].bytes).slice(0, Number(values.top))) {
    console.log(`${(bytes / CLIENTS).toFixed(0).padStart(8)}  ${(objects / CLIENTS).toFixed(2).padStart(14)}  ${owner}`);
  }
}

const fleet = new Fleet({ clients: CLIENTS, gateway: 'loop', seed: 1, record: false, transportCipher: transportCipherFor(dataPathMode()) });
if (!fleet.connectAll(120_000)) throw new Error(`only ${fleet.connectedCount()} of ${CLIENTS} clients connected`);
fleet.net.runUntil(fleet.net.now + Number(values['idle-seconds']) * 1_000);

const withGateway = join(tmpdir(), `scale-heap-${process.pid}-a.heapsnapshot`);
const without = join(tmpdir(), `scale-heap-${process.pid}-b.heapsnapshot`);
gc();
gc();
v8.writeHeapSnapshot(withGateway);
fleet.dropGateway();
await new Promise((resolve) => setTimeout(resolve, 10));
gc();
gc();
v8.writeHeapSnapshot(without);
try {
  report(load(withGateway), load(without));
} finally {
  rmSync(withGateway, { force: true });
  rmSync(without, { force: true });
}
