// Runs inside a scratch namespace (see dns-forwarder.test.ts); prints a JSON report as its last line.
import { spawn, spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import { once } from 'node:events';
import { TunDevice } from '../../../src/runtime/tun-device.ts';
import { applyInterfaceConfig } from '../../../src/runtime/interface-config.ts';
import { buildQuery, DnsForwarder } from '../../../src/runtime/dns-forwarder.ts';

const UPSTREAM = '10.53.0.1';
const TXT = 'x'.repeat(200);
ip('addr', 'add', `${UPSTREAM}/32`, 'dev', 'lo');
const dnsmasq = spawn(
  'dnsmasq',
  [
    '-k', '--user=root', '--pid-file=', '--no-resolv', '--no-hosts', '--bind-interfaces',
    `--listen-address=${UPSTREAM}`, '--port=53',
    '--address=/test.lab/10.1.2.3', '--edns-packet-max=4096', '--address=/firezone.dev/10.9.9.9',
    ...Array.from({ length: 6 }, (_, i) => `--txt-record=big.test.lab,${i}${TXT}`),
  ],
  { stdio: 'ignore' },
);
const tun = TunDevice.open('tun-firezone', { onPackets() {} });
const report: Record<string, unknown> = {};
try {
  await applyInterfaceConfig('tun-firezone', { ipv4: '100.64.0.1', ipv6: 'fd00:2021:1111::1' });
  // An upstream with no route (ENETUNREACH on connect) fails its probe without crashing the process.
  const unreachable = new DnsForwarder({ upstreams: ['192.0.2.53'], probeTimeoutMs: 300 });
  await unreachable.probeAll();
  report['unreachableUpstreamFastest'] = unreachable.upstreams.fastest() ?? null;
  await unreachable.close();
  const forwarder = new DnsForwarder({ upstreams: [UPSTREAM] });
  await forwarder.rebind({ ipv4: '100.64.0.1', ipv6: 'fd00:2021:1111::1' });
  report['beforeProbe'] = summary(await udpQuery('100.64.0.1', buildQuery(1, 'app.test.lab')));
  await waitForUpstream();
  await forwarder.startProbing();
  report['fastest'] = forwarder.upstreams.fastest();
  report['udp4'] = summary(await udpQuery('100.64.0.1', buildQuery(2, 'app.test.lab')));
  report['udp6'] = summary(await udpQuery('fd00:2021:1111::1', buildQuery(3, 'app.test.lab')));
  report['tcp4'] = summary(await tcpQuery('100.64.0.1', [buildQuery(4, 'app.test.lab'), buildQuery(5, 'www.test.lab')]));
  report['tcp6'] = summary(await tcpQuery('fd00:2021:1111::1', [buildQuery(6, 'app.test.lab')]));
  report['bigUdp'] = summary(await udpQuery('100.64.0.1', withEdns(buildQuery(7, 'big.test.lab', 16))));
  report['bigTcp'] = summary(await tcpQuery('100.64.0.1', [withEdns(buildQuery(8, 'big.test.lab', 16))]));
  report['malformed'] = await udpQuery('100.64.0.1', Uint8Array.from([1, 2, 3]), 300).then(
    () => 'answered',
    () => 'silent',
  );

  const idleClient = connect({ host: '100.64.0.1', port: 53535 });
  await once(idleClient, 'connect');
  report['unbindable'] = await forwarder.rebind({ ipv4: '100.64.0.99' }).then(
    () => 'bound',
    (error: { code: string }) => error.code,
  );
  await applyInterfaceConfig('tun-firezone', { ipv4: '100.64.0.7', ipv6: 'fd00:2021:1111::7' });
  await forwarder.rebind({ ipv4: '100.64.0.7', ipv6: 'fd00:2021:1111::99' });
  report['idleClientClosed'] = idleClient.destroyed || (await once(idleClient, 'close').then(() => true));
  report['afterRebind'] = summary(await udpQuery('100.64.0.7', buildQuery(9, 'app.test.lab')));
  report['oldAddress'] = await udpQuery('100.64.0.1', buildQuery(10, 'app.test.lab'), 300).then(
    () => 'answered',
    () => 'silent',
  );
  await forwarder.close();
} finally {
  dnsmasq.kill();
  tun.close();
}
console.log(JSON.stringify(report));

/** Appends an OPT record advertising 4096-byte UDP responses. */
function withEdns(query: Uint8Array): Uint8Array {
  const opt = Uint8Array.from([0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
  const result = new Uint8Array(query.length + opt.length);
  result.set(query);
  result.set(opt, query.length);
  result[11] = 1;
  return result;
}

/** id, flags, counts and the last 4 bytes (the A record's address when there is one). */
function summary(messages: Uint8Array | Uint8Array[]) {
  const list = Array.isArray(messages) ? messages : [messages];
  return list.map((m) => {
    const view = new DataView(m.buffer, m.byteOffset, m.byteLength);
    return {
      id: view.getUint16(0),
      flags: view.getUint16(2),
      answers: view.getUint16(6),
      length: m.length,
      tail: [...m.subarray(m.length - 4)].join('.'),
    };
  });
}

async function udpQuery(server: string, query: Uint8Array, timeoutMs = 3000): Promise<Uint8Array> {
  const socket = createSocket(server.includes(':') ? 'udp6' : 'udp4');
  try {
    socket.send(query, 53535, server);
    const [message] = (await Promise.race([
      once(socket, 'message'),
      new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), timeoutMs)),
    ])) as [Buffer];
    return message;
  } finally {
    socket.close();
  }
}

async function tcpQuery(server: string, queries: Uint8Array[]): Promise<Uint8Array[]> {
  const socket = connect({ host: server, port: 53535 });
  await once(socket, 'connect');
  const responses: Uint8Array[] = [];
  let buffered = Buffer.alloc(0);
  for (const query of queries) {
    const frame = Buffer.alloc(2 + query.length);
    frame.writeUInt16BE(query.length);
    frame.set(query, 2);
    socket.write(frame);
    while (buffered.length < 2 || buffered.length < 2 + buffered.readUInt16BE(0)) {
      const [chunk] = (await once(socket, 'data')) as [Buffer];
      buffered = Buffer.concat([buffered, chunk]);
    }
    const length = buffered.readUInt16BE(0);
    responses.push(buffered.subarray(2, 2 + length));
    buffered = buffered.subarray(2 + length);
  }
  socket.destroy();
  return responses;
}

async function waitForUpstream(): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const probe = spawnSync('dig', ['+short', '+time=1', '+tries=1', `@${UPSTREAM}`, 'firezone.dev'], { encoding: 'utf8' });
    if (probe.stdout.trim() === '10.9.9.9') return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error('dnsmasq did not start');
}

function ip(...args: string[]): void {
  const result = spawnSync('ip', args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`ip ${args.join(' ')}: ${result.stderr}`);
}
