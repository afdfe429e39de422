// WireGuard transport throughput: our Tunnel's seal (encapsulate) and open (decapsulate)
// beside raw node:crypto ChaCha20-Poly1305 on the same 1280-byte packets, in the same run.
// Usage: npm run bench:wireguard [-- seconds-per-run runs]
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { seededRandom } from '../src/util/random.ts';
import { RateLimiter, staticIdentity, Tunnel } from '../src/wireguard/index.ts';

const PACKET_SIZE = 1280;
const seconds = Number(process.argv[2] ?? 1);
const runs = Number(process.argv[3] ?? 5);

function makeTunnels(): { a: Tunnel; b: Tunnel } {
  const idA = staticIdentity(randomBytes(32));
  const idB = staticIdentity(randomBytes(32));
  const psk = randomBytes(32);
  const a = new Tunnel({ local: idA, peer: idB.publicKey, presharedKey: psk, index: 1, rng: seededRandom(1), rateLimiter: new RateLimiter(idA, seededRandom(2), 0), now: 0 });
  const b = new Tunnel({ local: idB, peer: idA.publicKey, presharedKey: psk, index: 2, rng: seededRandom(3), rateLimiter: new RateLimiter(idB, seededRandom(4), 0), now: 0 });
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
  const end = performance.now() + seconds * 1000;
  let count = 0;
  const start = performance.now();
  while (performance.now() < end) {
    for (let i = 0; i < 256; i++) op();
    count += 256;
  }
  return count / ((performance.now() - start) / 1000);
}

function summary(name: string, rates: number[]): void {
  const sorted = [...rates].sort((x, y) => x - y);
  const fmt = (r: number): string => `${(r / 1000).toFixed(0)}k pkt/s = ${((r * PACKET_SIZE * 8) / 1e9).toFixed(2)} Gbit/s`;
  const median = sorted[Math.floor(sorted.length / 2)]!;
  console.log(`${name.padEnd(34)} min ${fmt(sorted[0]!)} | median ${fmt(median)} | max ${fmt(sorted.at(-1)!)}`);
}

const { a, b } = makeTunnels();
const plain = packet();
const BATCH = 4096;
const batch: Uint8Array[] = new Array<Uint8Array>(BATCH);

/** Opens freshly sealed batches (sealing is not timed: the replay window needs new counters). */
function measureOpen(): number {
  let elapsed = 0;
  let count = 0;
  while (elapsed < seconds * 1000) {
    for (let i = 0; i < BATCH; i++) batch[i] = a.encapsulate(plain, 1) as Uint8Array;
    const start = performance.now();
    for (let i = 0; i < BATCH; i++) {
      const out = b.decapsulate(batch[i]!, '10.0.0.1', 1);
      if (typeof out === 'string') throw new Error(`open failed: ${out}`);
    }
    elapsed += performance.now() - start;
    count += BATCH;
  }
  return count / (elapsed / 1000);
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
  'node:crypto seal (raw)': [],
  'node:crypto open (raw)': [],
  'Tunnel.encapsulate (seal)': [],
  'Tunnel.decapsulate (open)': [],
};

for (let run = 0; run < runs; run++) {
  results['node:crypto seal (raw)']!.push(
    measure(() => {
      const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
      c.update(plain);
      c.final();
      c.getAuthTag();
    }),
  );
  results['node:crypto open (raw)']!.push(
    measure(() => {
      const d = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
      d.setAuthTag(rawSealed.tag);
      d.update(rawSealed.ct);
      d.final();
    }),
  );
  results['Tunnel.encapsulate (seal)']!.push(
    measure(() => {
      a.encapsulate(plain, 1);
    }),
  );
  results['Tunnel.decapsulate (open)']!.push(measureOpen());
}

/** Complete handshakes per second: initiation, response and confirmation between fresh tunnel pairs. */
function measureHandshakes(): number {
  const start = performance.now();
  let count = 0;
  while (performance.now() - start < seconds * 1000) {
    makeTunnels();
    count++;
  }
  return count / ((performance.now() - start) / 1000);
}
const handshakes: number[] = [];
for (let run = 0; run < runs; run++) handshakes.push(measureHandshakes());

console.log(`WireGuard transport, ${PACKET_SIZE}-byte packets, ${runs} runs of ${seconds} s, Node ${process.version}`);
for (const [name, rates] of Object.entries(results)) summary(name, rates);
const sortedHandshakes = handshakes.sort((x, y) => x - y);
console.log(
  `${'handshake (two tunnels, 4 messages)'.padEnd(34)} min ${sortedHandshakes[0]!.toFixed(0)}/s | median ${sortedHandshakes[Math.floor(runs / 2)]!.toFixed(0)}/s | max ${sortedHandshakes.at(-1)!.toFixed(0)}/s (includes building both tunnels)`,
);
