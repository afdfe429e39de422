import { TIMESTAMP_SIZE } from './constants.ts';

const TAI64_EPOCH = 2n ** 62n;
/** TAI is ahead of UTC by 37 s; peers only compare timestamps, so the offset is cosmetic. */
const TAI_OFFSET_SECONDS = 37n;

/** TAI64N label for a Unix time in milliseconds: 8-byte big-endian seconds, 4-byte nanoseconds. */
export function tai64n(unixMs: number): Uint8Array {
  const out = new Uint8Array(TIMESTAMP_SIZE);
  const view = new DataView(out.buffer);
  const ms = Math.max(0, Math.floor(unixMs));
  view.setBigUint64(0, TAI64_EPOCH + TAI_OFFSET_SECONDS + BigInt(Math.floor(ms / 1000)), false);
  view.setUint32(8, (ms % 1000) * 1_000_000, false);
  return out;
}

/** Byte-wise big-endian comparison: is `a` strictly later than `b`? */
export function isLater(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < TIMESTAMP_SIZE; i++) {
    const d = a[i]! - b[i]!;
    if (d !== 0) return d > 0;
  }
  return false;
}
