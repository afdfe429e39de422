// Transaction ids of connectivity checks that say which agent sent them.
//
// A node routes a response to the agent that sent the request by a tag the agent writes into its
// transaction ids (one routing entry per connection instead of one per outstanding check). The tag
// is masked with a keyed mix of the id's other 64 random bits, so every id still looks uniformly
// random on the wire (RFC 8489 §6) and the ids of one connection share no visible bits. The mask is
// not a cryptographic PRF: responses are authenticated by MESSAGE-INTEGRITY, and the 64 random bits
// are what makes an id unguessable.
import { readI32 } from '../ip/bytes.ts';
import type { RandomSource } from '../util/random.ts';

export class TransactionIds {
  private readonly key0: number;
  private readonly key1: number;
  private readonly key2: number;

  constructor(rng: RandomSource) {
    this.key0 = rng.u32() | 0;
    this.key1 = rng.u32() | 0;
    this.key2 = rng.u32() | 0;
  }

  /** Fills `id` (12 bytes) with random bits that carry `tag` (a 32-bit integer) for `tagOf`. */
  fill(id: Uint8Array, tag: number, rng: RandomSource): void {
    rng.fill(id);
    const masked = (tag ^ this.mask(id)) >>> 0;
    id[0] = masked >>> 24;
    id[1] = (masked >>> 16) & 0xff;
    id[2] = (masked >>> 8) & 0xff;
    id[3] = masked & 0xff;
  }

  /** The tag `fill` wrote into `id` (for a foreign id: some 32-bit number). */
  tagOf(id: Uint8Array): number {
    return (readI32(id, 0) ^ this.mask(id)) >>> 0;
  }

  private mask(id: Uint8Array): number {
    let h = Math.imul(readI32(id, 4) ^ this.key0, 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 15) ^ readI32(id, 8) ^ this.key1, 0xc2b2ae35);
    h = Math.imul(h ^ (h >>> 13) ^ this.key2, 0x27d4eb2d);
    return h ^ (h >>> 16);
  }
}

/** Bytes 8..11 of an id as a signed 32-bit integer: what an agent keeps of each outstanding check. */
export function transactionWord(id: Uint8Array): number {
  return readI32(id, 8);
}
