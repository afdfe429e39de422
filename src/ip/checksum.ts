/**
 * The Internet checksum (RFC 1071) and its incremental update (RFC 1624, eqn. 3).
 *
 * Sums are kept unfolded in a JS number (exact up to 2^53, far beyond any packet) and folded once at the end.
 */

/** Adds the big-endian 16-bit words of `bytes[start, end)` to `initial`; an odd last byte is padded with zero. */
export function sumWords(bytes: Uint8Array, start: number, end: number, initial = 0): number {
  let sum = initial;
  let i = start;
  const evenEnd = end - ((end - start) & 1);
  // Unrolled: big-endian 16-bit words are summed 4 at a time (the partial sums stay far below 2^53).
  for (; i + 8 <= evenEnd; i += 8) {
    sum +=
      ((bytes[i]! << 8) | bytes[i + 1]!) +
      ((bytes[i + 2]! << 8) | bytes[i + 3]!) +
      ((bytes[i + 4]! << 8) | bytes[i + 5]!) +
      ((bytes[i + 6]! << 8) | bytes[i + 7]!);
  }
  for (; i < evenEnd; i += 2) sum += (bytes[i]! << 8) | bytes[i + 1]!;
  if (i < end) sum += bytes[i]! << 8;
  return sum;
}

/** Folds carries into 16 bits (end-around carry). Nonzero sums fold into [1, 0xffff]. */
export function foldSum(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/** The checksum field value for an unfolded sum: the ones' complement of the folded sum. */
export function finishChecksum(sum: number): number {
  return ~foldSum(sum) & 0xffff;
}

/** The Internet checksum of `bytes[start, end)` plus `initial` (e.g. a pseudo-header sum). */
export function internetChecksum(bytes: Uint8Array, start: number, end: number, initial = 0): number {
  return finishChecksum(sumWords(bytes, start, end, initial));
}

/** RFC 1624 eqn. 3: the new checksum after one 16-bit word changed from `oldWord` to `newWord`. */
export function updateChecksum16(checksum: number, oldWord: number, newWord: number): number {
  return finishChecksum((~checksum & 0xffff) + (~oldWord & 0xffff) + (newWord & 0xffff));
}

/** RFC 1624 eqn. 3 for a 32-bit field (e.g. an IPv4 address) that changed from `oldValue` to `newValue`. */
export function updateChecksum32(checksum: number, oldValue: number, newValue: number): number {
  return finishChecksum(
    (~checksum & 0xffff) +
      (~(oldValue >>> 16) & 0xffff) +
      (~oldValue & 0xffff) +
      (newValue >>> 16) +
      (newValue & 0xffff),
  );
}

/**
 * RFC 1624 eqn. 3 for a field of `length` bytes (even) that changes from `oldBytes[oldOffset..]` to
 * `newBytes[newOffset..]`. Call before overwriting the old bytes.
 */
export function updateChecksumBytes(
  checksum: number,
  oldBytes: Uint8Array,
  oldOffset: number,
  newBytes: Uint8Array,
  newOffset: number,
  length: number,
): number {
  let sum = ~checksum & 0xffff;
  for (let i = 0; i < length; i += 2) {
    sum += (~((oldBytes[oldOffset + i]! << 8) | oldBytes[oldOffset + i + 1]!) & 0xffff) +
      ((newBytes[newOffset + i]! << 8) | newBytes[newOffset + i + 1]!);
  }
  return finishChecksum(sum);
}

/** Sum of the IPv4 pseudo-header (RFC 768/793) for a packet whose IPv4 header starts at offset 0. */
export function pseudoHeaderSumV4(packet: Uint8Array, protocol: number, l4Length: number): number {
  return sumWords(packet, 12, 20, protocol + l4Length);
}

/** Sum of the IPv6 pseudo-header (RFC 8200 §8.1) for a packet whose header starts at offset 0. */
export function pseudoHeaderSumV6(packet: Uint8Array, nextHeader: number, l4Length: number): number {
  return sumWords(packet, 8, 40, nextHeader + (l4Length >>> 16) + (l4Length & 0xffff));
}

/** The IPv4 header checksum of `packet[0, headerLength)`, computed as if the checksum field were zero. */
export function ipv4HeaderChecksum(packet: Uint8Array, headerLength: number): number {
  const sum = sumWords(packet, 0, headerLength) - ((packet[10]! << 8) | packet[11]!);
  return finishChecksum(sum);
}
