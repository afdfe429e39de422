// Runs inside a scratch namespace (see interface-config.test.ts); prints a JSON report as its last line.
import { spawnSync } from 'node:child_process';
import { TunDevice } from '../../../src/runtime/tun-device.ts';
import { applyInterfaceConfig } from '../../../src/runtime/interface-config.ts';

const tun = TunDevice.open('tun-firezone', { onPackets() {} });
await applyInterfaceConfig('tun-firezone', { ipv4: '100.64.0.1', ipv6: 'fd00:2021:1111::1' });
const first = snapshot();
await applyInterfaceConfig('tun-firezone', { ipv4: '100.64.0.7', ipv6: 'fd00:2021:1111::7' });
const second = snapshot();
tun.close();
console.log(JSON.stringify({ first, second }));

function snapshot() {
  return {
    link: JSON.parse(ip('-j', 'link', 'show', 'tun-firezone')),
    addresses: JSON.parse(ip('-j', 'address', 'show', 'dev', 'tun-firezone')),
    rules4: JSON.parse(ip('-j', '-4', 'rule', 'show')),
    rules6: JSON.parse(ip('-j', '-6', 'rule', 'show')),
    routes4: JSON.parse(ip('-j', '-4', 'route', 'show', 'table', '539098368')),
    routes6: JSON.parse(ip('-j', '-6', 'route', 'show', 'table', '539098368')),
    routeGet: ip('route', 'get', '100.64.3.4'),
  };
}

function ip(...args: string[]): string {
  const result = spawnSync('ip', args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`ip ${args.join(' ')}: ${result.stderr}`);
  return result.stdout;
}
