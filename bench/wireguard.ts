// WireGuard transport throughput on 1280-byte packets, in the same run:
// - raw ChaCha20-Poly1305: node:crypto one packet per call, and the native addon 256 jobs per call;
// - our Tunnel one packet at a time (encapsulate / decapsulate) with node:crypto and native keys;
// - our Tunnel through batches (encapsulateInto + SealBatch, decapsulate + OpenBatch), 256 per
//   cipher call, with native keys: the gateway's data path.
// Beside them, the ceiling: OpenSSL's own `openssl speed -evp chacha20-poly1305 -bytes 1280` (seal) and
// with `-decrypt` (open), one core, the same library family Node and the addon call.
// Every rate is per second of CPU time of this process (user + system, all its threads, so a collector's
// helper threads count too), not of the wall clock: the machine is shared, and `openssl speed` divides by
// CPU time as well, so the two read as "on one core" whatever the load. `seconds-per-run` is CPU seconds.
// Usage: npm run bench:wireguard [-- seconds-per-run runs]
import { execFileSync } from 'node:child_process';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import os from 'node:os';
import { NativeTransportCipher } from '../src/runtime/native-cipher.ts';
import { seededRandom } from '../src/util/random.ts';
import {
  AEAD_JOB_WORDS,
  NodeCryptoTransportCipher,
  OpenBatch,
  RateLimiter,
  SealBatch,
  staticIdentity,
  Tunnel,
  writeAeadJob,
  type TransportCipher,
} from '../src/wireguard/index.ts';

const PACKET_SIZE = 1280;

/** CPU milliseconds this process has used (user + system). */
function cpuNow(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}
const seconds = Number(process.argv[2] ?? 1);
const runs = Number(process.argv[3] ?? 5);

function makeTunnels(cipherA: TransportCipher = new NodeCryptoTransportCipher(), cipherB: TransportCipher = new NodeCryptoTransportCipher()): { a: Tunnel; b: Tunnel } {
  const idA = staticIdentity(randomBytes(32));
  const idB = staticIdentity(randomBytes(32));
  const psk = randomBytes(32);
  const a = new Tunnel({ local: idA, peer: idB.publicKey, presharedKey: psk, index: 1, rng: seededRandom(1), rateLimiter: new RateLimiter(idA, seededRandom(2), 0), now: 0, cipher: cipherA });
  const b = new Tunnel({ local: idB, peer: idA.publicKey, presharedKey: psk, index: 2, rng: seededRandom(3), rateLimiter: new RateLimiter(idB, seededRandom(4), 0), now: 0, cipher: cipherB });
  a.initiateHandshake(0);
  for (let d = a.pollTransmit(); d; d = a.pollTransmit()) b.decapsulate(d, '10.0.0.1', 0);
  for (let d = b.pollTransmit(); d; d = b.pollTransmit()) a.decapsulate(d, '10.0.0.2', 0);
  for (let d = a.pollTransmit(); d; d = a.pollTransmit()) b.decapsulate(d, '10.0.0.1', 0);
  return { a, b };
}

function packet(): Uint8Array {
  const p = randomBytes(PACKET_SIZE);
  p[0] = 0x45;
  p[2] = PACKET_SIZE >> 8;
  p[3] = PACKET_SIZE & 0xff;
  return p;
}

/** Runs `op` in batches for `seconds`; returns operations per second. */
function measure(op: () => void): number {
  const end = cpuNow() + seconds * 1000;
  let count = 0;
  const start = cpuNow();
  while (cpuNow() < end) {
    for (let i = 0; i < 256; i++) op();
    count += 256;
  }
  return count / ((cpuNow() - start) / 1000);
}

function loadAverage(): string {
  return os.loadavg().map((l) => l.toFixed(2)).join(' ');
}

function summary(name: string, rates: number[]): void {
  const sorted = [...rates].sort((x, y) => x - y);
  const fmt = (r: number): string => `${(r / 1000).toFixed(0)}k pkt/s = ${((r * PACKET_SIZE * 8) / 1e9).toFixed(2)} Gbit/s`;
  const median = sorted[Math.floor(sorted.length / 2)]!;
  console.log(`${name.padEnd(36)} min ${fmt(sorted[0]!)} | median ${fmt(median)} | max ${fmt(sorted.at(-1)!)}`);
}

const { a, b } = makeTunnels();
const nativeA = new NativeTransportCipher();
const nativeB = new NativeTransportCipher();
const native = makeTunnels(nativeA, nativeB);
const plain = packet();
const BATCH = 4096;
const batch: Uint8Array[] = new Array<Uint8Array>(BATCH);
const CIPHER_BATCH = 256;

/** Opens freshly sealed batches (sealing is not timed: the replay window needs new counters). */
function measureOpen(from: Tunnel, to: Tunnel): number {
  let elapsed = 0;
  let count = 0;
  while (elapsed < seconds * 1000) {
    for (let i = 0; i < BATCH; i++) batch[i] = (from.encapsulate(plain, 1) as Uint8Array).slice();
    const start = cpuNow();
    for (let i = 0; i < BATCH; i++) {
      const out = to.decapsulate(batch[i]!, '10.0.0.1', 1);
      if (typeof out === 'string') throw new Error(`open failed: ${out}`);
    }
    elapsed += cpuNow() - start;
    count += BATCH;
  }
  return count / (elapsed / 1000);
}

const sealBatch = new SealBatch(nativeA, 4);
/** The gateway's send path: packets into a seal batch, one cipher call per 256, datagrams handed out. */
function measureSealBatched(): number {
  const end = cpuNow() + seconds * 1000;
  const start = cpuNow();
  let count = 0;
  while (cpuNow() < end) {
    for (let i = 0; i < CIPHER_BATCH; i++) native.a.encapsulateInto(plain, 1, sealBatch);
    for (let slot = sealBatch.next(); slot !== -1; slot = sealBatch.next()) sealBatch.datagram(slot);
    count += CIPHER_BATCH;
  }
  return count / ((cpuNow() - start) / 1000);
}

const openBatch = new OpenBatch(nativeB);
const ring = new Uint8Array(CIPHER_BATCH * 1400);
const ringViews = Array.from({ length: CIPHER_BATCH }, (_, i) => ring.subarray(i * 1400, i * 1400 + PACKET_SIZE + 32));
/** The gateway's receive path: datagrams in one receive ring, queued, one cipher call per 256, packets handed out. */
function measureOpenBatched(): number {
  let elapsed = 0;
  let count = 0;
  while (elapsed < seconds * 1000) {
    for (let i = 0; i < CIPHER_BATCH; i++) ring.set(native.a.encapsulate(plain, 1) as Uint8Array, i * 1400);
    const start = cpuNow();
    for (let i = 0; i < CIPHER_BATCH; i++) native.b.decapsulate(ringViews[i]!, '10.0.0.1', 1, openBatch);
    for (let slot = openBatch.next(1); slot !== -1; slot = openBatch.next(1)) {
      if (typeof openBatch.outcome(slot) !== 'number') throw new Error(`open failed: ${String(openBatch.outcome(slot))}`);
    }
    elapsed += cpuNow() - start;
    count += CIPHER_BATCH;
  }
  return count / (elapsed / 1000);
}

/** The addon's AEAD alone: 256 jobs per call, in place. */
function measureRawNative(open: boolean): number {
  const cipher = new NativeTransportCipher();
  const id = cipher.addKey(key, true);
  const openId = cipher.addKey(key, false);
  const buffer = new Uint8Array(CIPHER_BATCH * 1344);
  const jobs = new Uint32Array(CIPHER_BATCH * AEAD_JOB_WORDS);
  for (let i = 0; i < CIPHER_BATCH; i++) writeAeadJob(jobs, i, id, i, i * 1344, PACKET_SIZE, i * 1344);
  cipher.run(false, buffer, buffer, jobs, CIPHER_BATCH);
  const target = new Uint8Array(buffer.length);
  if (open) for (let i = 0; i < CIPHER_BATCH; i++) writeAeadJob(jobs, i, openId, i, i * 1344, PACKET_SIZE + 16, i * 1344);
  const end = cpuNow() + seconds * 1000;
  const start = cpuNow();
  let count = 0;
  while (cpuNow() < end) {
    if (open) cipher.run(true, buffer, target, jobs, CIPHER_BATCH);
    else cipher.run(false, buffer, buffer, jobs, CIPHER_BATCH);
    count += CIPHER_BATCH;
  }
  return count / ((cpuNow() - start) / 1000);
}

const key = randomBytes(32);
const nonce = Buffer.alloc(12);
const rawSealed = (() => {
  const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
  const ct = c.update(plain);
  c.final();
  return { ct, tag: c.getAuthTag() };
})();

const results: Record<string, number[]> = {
  'node:crypto seal (raw, 1/call)': [],
  'node:crypto open (raw, 1/call)': [],
  'native seal (raw, 256/call)': [],
  'native open (raw, 256/call)': [],
  'Tunnel seal, node:crypto, 1 by 1': [],
  'Tunnel open, node:crypto, 1 by 1': [],
  'Tunnel seal, native, 1 by 1': [],
  'Tunnel open, native, 1 by 1': [],
  'Tunnel seal, native batch (256)': [],
  'Tunnel open, native batch (256)': [],
};

for (let run = 0; run < runs; run++) {
  results['node:crypto seal (raw, 1/call)']!.push(
    measure(() => {
      const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
      c.update(plain);
      c.final();
      c.getAuthTag();
    }),
  );
  results['node:crypto open (raw, 1/call)']!.push(
    measure(() => {
      const d = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
      d.setAuthTag(rawSealed.tag);
      d.update(rawSealed.ct);
      d.final();
    }),
  );
  results['native seal (raw, 256/call)']!.push(measureRawNative(false));
  results['native open (raw, 256/call)']!.push(measureRawNative(true));
  results['Tunnel seal, node:crypto, 1 by 1']!.push(
    measure(() => {
      a.encapsulate(plain, 1);
    }),
  );
  results['Tunnel open, node:crypto, 1 by 1']!.push(measureOpen(a, b));
  results['Tunnel seal, native, 1 by 1']!.push(
    measure(() => {
      native.a.encapsulate(plain, 1);
    }),
  );
  results['Tunnel open, native, 1 by 1']!.push(measureOpen(native.a, native.b));
  results['Tunnel seal, native batch (256)']!.push(measureSealBatched());
  results['Tunnel open, native batch (256)']!.push(measureOpenBatched());
}

/** Complete handshakes per second: initiation, response and confirmation between fresh tunnel pairs. */
function measureHandshakes(): number {
  const start = cpuNow();
  let count = 0;
  while (cpuNow() - start < seconds * 1000) {
    makeTunnels();
    count++;
  }
  return count / ((cpuNow() - start) / 1000);
}
const handshakes: number[] = [];
for (let run = 0; run < runs; run++) handshakes.push(measureHandshakes());

console.log(`WireGuard transport, ${PACKET_SIZE}-byte packets, ${runs} runs of ${seconds} CPU s, rates per CPU second, Node ${process.version}, OpenSSL ${process.versions.openssl}, load ${loadAverage()}`);
for (const [name, rates] of Object.entries(results)) summary(name, rates);
const medianOf = (rates: number[]): number => [...rates].sort((x, y) => x - y)[Math.floor(rates.length / 2)]!;
const ratio = (batched: string, single: string): string => (medianOf(results[batched]!) / medianOf(results[single]!)).toFixed(1);
console.log(`native batch / node:crypto 1 by 1 (Tunnel): seal ${ratio('Tunnel seal, native batch (256)', 'Tunnel seal, node:crypto, 1 by 1')}x, open ${ratio('Tunnel open, native batch (256)', 'Tunnel open, node:crypto, 1 by 1')}x`);
const gbits = (name: string): number => (medianOf(results[name]!) * PACKET_SIZE * 8) / 1e9;
const ceilingSeal = opensslSpeed(false);
const ceilingOpen = opensslSpeed(true);
const showCeiling = (value: number | undefined): string => (value === undefined ? 'n/a' : value.toFixed(2));
const shareOfCeiling = (value: number, ceiling: number | undefined): string => (ceiling === undefined ? '' : ` (${((100 * value) / ceiling).toFixed(0)} % of OpenSSL)`);
console.log(`seal and open of ${PACKET_SIZE}-byte packets on one core, Gbit/s (medians; load ${loadAverage()}):`);
console.log(`  ${'path'.padEnd(40)} ${'seal'.padStart(7)} ${'open'.padStart(7)}`);
const line = (name: string, seal: number, open: number, note = ''): void => console.log(`  ${name.padEnd(40)} ${seal.toFixed(2).padStart(7)} ${open.toFixed(2).padStart(7)}${note}`);
line('node:crypto, Tunnel 1 by 1 (fallback)', gbits('Tunnel seal, node:crypto, 1 by 1'), gbits('Tunnel open, node:crypto, 1 by 1'));
line('native batch (256), Tunnel (data path)', gbits('Tunnel seal, native batch (256)'), gbits('Tunnel open, native batch (256)'));
line('native raw AEAD (256/call)', gbits('native seal (raw, 256/call)'), gbits('native open (raw, 256/call)'));
console.log(`  ${'ceiling: openssl speed -evp (1 core)'.padEnd(40)} ${showCeiling(ceilingSeal).padStart(7)} ${showCeiling(ceilingOpen).padStart(7)}`);
console.log(
  `target (printed, not tested): native batch seal and open >= 8 Gbit/s on one core: seal ${gbits('Tunnel seal, native batch (256)').toFixed(2)}${shareOfCeiling(gbits('Tunnel seal, native batch (256)'), ceilingSeal)}, open ${gbits('Tunnel open, native batch (256)').toFixed(2)}${shareOfCeiling(gbits('Tunnel open, native batch (256)'), ceilingOpen)} Gbit/s: ${gbits('Tunnel seal, native batch (256)') >= 8 && gbits('Tunnel open, native batch (256)') >= 8 ? 'met' : 'not met'}`,
);

/**
 * OpenSSL's own ChaCha20-Poly1305 rate on PACKET_SIZE blocks in Gbit/s (`openssl speed` prints 1000s of bytes
 * per second), the same seconds per run as ours; undefined when the tool is missing or its output changed.
 */
function opensslSpeed(decrypt: boolean): number | undefined {
  try {
    const out = execFileSync('openssl', ['speed', ...(decrypt ? ['-decrypt'] : []), '-seconds', String(Math.max(1, Math.round(seconds))), '-evp', 'chacha20-poly1305', '-bytes', String(PACKET_SIZE)], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const match = /^ChaCha20-Poly1305\s+([\d.]+)k\s*$/im.exec(out);
    return match === null ? undefined : (Number(match[1]) * 1000 * 8) / 1e9;
  } catch {
    return undefined;
  }
}
const sortedHandshakes = handshakes.sort((x, y) => x - y);
console.log(
  `${'handshake (two tunnels, 4 messages)'.padEnd(34)} min ${sortedHandshakes[0]!.toFixed(0)}/s | median ${sortedHandshakes[Math.floor(runs / 2)]!.toFixed(0)}/s | max ${sortedHandshakes.at(-1)!.toFixed(0)}/s (includes building both tunnels)`,
);
