import { readFileSync } from 'node:fs';

const CAP_NET_ADMIN = 12n;

export const PERMISSION_MESSAGE =
  'firezone-gateway needs to be executed as `root` or with the `CAP_NET_ADMIN` capability.\n' +
  'See https://www.firezone.dev/kb/deploy/gateways#permissions for details.\n';

/** True when the `CapEff` line of a /proc/<pid>/status text has CAP_NET_ADMIN. */
export function hasNetAdminCapability(procStatus: string): boolean {
  const match = /^CapEff:\s*([0-9a-fA-F]+)\s*$/m.exec(procStatus);
  if (!match) return false;
  return ((BigInt(`0x${match[1]}`) >> CAP_NET_ADMIN) & 1n) === 1n;
}

/** The reference's pre-check: real uid 0, or CAP_NET_ADMIN in the effective set. */
export function hasRequiredPermissions(
  uid: number = process.getuid?.() ?? -1,
  readStatus: () => string = () => readFileSync('/proc/self/status', 'utf8'),
): boolean {
  if (uid === 0) return true;
  try {
    return hasNetAdminCapability(readStatus());
  } catch {
    return false;
  }
}
