// IP address text <-> bytes for the STUN address attributes, formatting IPv6 the way
// glibc's inet_ntop (and therefore Node's dgram `rinfo.address`) does, so addresses
// decoded from STUN compare equal to addresses reported by sockets.

/** Writes the 4 or 16 address bytes of `address` at `offset`; returns false if it is not an IP. */
export function writeIpAddress(address: string, family: 4 | 6, target: Uint8Array, offset: number): boolean {
  return family === 4 ? writeIpv4(address, target, offset) : writeIpv6(address, target, offset);
}

export function formatIpv4(bytes: Uint8Array, offset: number): string {
  return `${bytes[offset]}.${bytes[offset + 1]}.${bytes[offset + 2]}.${bytes[offset + 3]}`;
}

export function formatIpv6(bytes: Uint8Array, offset: number): string {
  const words = new Array<number>(8);
  for (let i = 0; i < 8; i++) words[i] = (bytes[offset + 2 * i]! << 8) | bytes[offset + 2 * i + 1]!;
  let bestStart = -1;
  let bestLength = 0;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  if (bestLength < 2) bestStart = -1;
  const embedsIpv4 = bestStart === 0 && (bestLength === 6 || (bestLength === 5 && words[5] === 0xffff));
  let text = '';
  const end = embedsIpv4 ? 6 : 8;
  for (let i = 0; i < end; i++) {
    if (i === bestStart) {
      text += i === 0 ? '::' : ':';
      i += bestLength - 1;
      continue;
    }
    text += words[i]!.toString(16);
    if (i < 7) text += ':';
  }
  if (embedsIpv4) return text + formatIpv4(bytes, offset + 12);
  return text.endsWith(':') && !text.endsWith('::') ? text.slice(0, -1) : text;
}

function writeIpv4(address: string, target: Uint8Array, offset: number): boolean {
  const parts = address.split('.');
  if (parts.length !== 4) return false;
  for (let i = 0; i < 4; i++) {
    const part = parts[i]!;
    if (!/^\d{1,3}$/.test(part)) return false;
    const value = Number(part);
    if (value > 255) return false;
    target[offset + i] = value;
  }
  return true;
}

function writeIpv6(address: string, target: Uint8Array, offset: number): boolean {
  let text = address;
  const zone = text.indexOf('%');
  if (zone >= 0) text = text.slice(0, zone);
  const words: number[] = [];
  const halves = text.split('::');
  if (halves.length > 2) return false;
  const head = parseWords(halves[0]!, halves.length === 1 ? 8 : 7);
  if (head === undefined) return false;
  if (halves.length === 1) {
    if (head.length !== 8) return false;
    words.push(...head);
  } else {
    const tail = parseWords(halves[1]!, 7 - head.length);
    if (tail === undefined || head.length + tail.length > 7) return false;
    words.push(...head);
    for (let i = head.length + tail.length; i < 8; i++) words.push(0);
    words.push(...tail);
  }
  for (let i = 0; i < 8; i++) {
    target[offset + 2 * i] = words[i]! >> 8;
    target[offset + 2 * i + 1] = words[i]! & 0xff;
  }
  return true;
}

function parseWords(text: string, maxWords: number): number[] | undefined {
  if (text === '') return [];
  const parts = text.split(':');
  const words: number[] = [];
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    if (i === parts.length - 1 && part.includes('.')) {
      const v4 = new Uint8Array(4);
      if (!writeIpv4(part, v4, 0)) return undefined;
      words.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      continue;
    }
    if (!/^[0-9a-fA-F]{1,4}$/.test(part)) return undefined;
    words.push(parseInt(part, 16));
  }
  return words.length <= maxWords ? words : undefined;
}
