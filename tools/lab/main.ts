/**
 * `node --import tsx tools/lab/main.ts up [--client-nat MODE] [--gateway-nat MODE] [--prefix P]` and
 * `... down [--prefix P]`: brings the namespace lab up or down by hand (modes: none, port-preserving,
 * symmetric). The demo and the e2e suite use `labUp` directly.
 */
import { labDown, labPrefix, labUp, type NatMode } from './lab.ts';

const [command, ...rest] = process.argv.slice(2);
const option = (name: string): string | undefined => {
  const index = rest.indexOf(name);
  return index === -1 ? undefined : rest[index + 1];
};
const prefix = option('--prefix') ?? 'fzl';
const mode = (value: string | undefined): NatMode => {
  if (value === undefined) return 'none';
  if (value === 'none' || value === 'port-preserving' || value === 'symmetric') return value;
  throw new Error(`unknown NAT mode ${value}`);
};

if (command === 'up') {
  const lab = labUp({ prefix, clientNat: mode(option('--client-nat')), gatewayNat: mode(option('--gateway-nat')) });
  console.log(JSON.stringify({ namespaces: lab.ns, addresses: lab.addresses }, null, 2));
} else if (command === 'down') {
  labDown(labPrefix(prefix));
} else {
  console.error('usage: lab up|down [--prefix P] [--client-nat none|port-preserving|symmetric] [--gateway-nat ...]');
  process.exit(2);
}
