// Canonical textual IP addresses, so candidate addresses compare equal to the addresses the socket
// layer reports (Node's `rinfo.address`, glibc inet_ntop style for IPv6).
import { formatIpv6 } from '../stun/index.ts';

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;

/** The canonical form of an IPv4 or IPv6 literal (no brackets, no zone), or undefined. */
export function canonicalIp(text: string): { address: string; family: 4 | 6 } | undefined {
  if (IPV4.test(text)) return { address: text, family: 4 };
  const bytes = parseIpv6(text);
  if (bytes === undefined) return undefined;
  return { address: formatIpv6(bytes, 0), family: 6 };
}

function parseIpv6(text: string): Uint8Array | undefined {
  if (text.length < 2 || text.length > 45) return undefined;
  const words: number[] = [];
  let tail = text;
  let embedded: number[] | undefined;
  const lastColon = text.lastIndexOf(':');
  if (lastColon >= 0 && text.indexOf('.', lastColon) > lastColon) {
    const v4 = text.slice(lastColon + 1);
    if (!IPV4.test(v4)) return undefined;
    const parts = v4.split('.').map(Number);
    embedded = [(parts[0]! << 8) | parts[1]!, (parts[2]! << 8) | parts[3]!];
    tail = text.slice(0, lastColon + 1);
    if (!tail.endsWith('::')) tail = tail.slice(0, -1);
  }
  const halves = tail.split('::');
  if (halves.length > 2) return undefined;
  const parseGroups = (part: string): number[] | undefined => {
    if (part === '') return [];
    const groups = part.split(':');
    const out: number[] = [];
    for (const group of groups) {
      if (!HEX_GROUP.test(group)) return undefined;
      out.push(parseInt(group, 16));
    }
    return out;
  };
  const head = parseGroups(halves[0]!);
  const rest = halves.length === 2 ? parseGroups(halves[1]!) : [];
  if (head === undefined || rest === undefined) return undefined;
  const explicit = head.length + rest.length + (embedded?.length ?? 0);
  if (halves.length === 2) {
    if (explicit > 7) return undefined;
    words.push(...head, ...new Array<number>(8 - explicit).fill(0), ...rest);
  } else {
    if (explicit !== 8) return undefined;
    words.push(...head);
  }
  if (embedded !== undefined) words.push(...embedded);
  if (words.length !== 8) return undefined;
  const bytes = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    bytes[2 * i] = words[i]! >>> 8;
    bytes[2 * i + 1] = words[i]! & 0xff;
  }
  return bytes;
}
