// Sends one request to a resource and prints the answer as JSON, for tests that run it inside a
// namespace: `udp <ip> <port> <text>` (waits for the echo), `http <url>`, or `tcp <ip> <port>` (a connect,
// reporting the errno: EHOSTUNREACH for an ICMP error such as administratively prohibited,
// ECONNREFUSED for a RST, ETIMEDOUT for silence).
//   node --import tsx tools/test-client/probe.ts udp 10.88.0.2 7777 hello [--timeout-ms 3000] [--tries 3]
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';

function argument(name: string, fallback: string): string {
  const index = process.argv.indexOf(name);
  return index >= 0 ? (process.argv[index + 1] ?? fallback) : fallback;
}

const [kind, ...rest] = process.argv.slice(2);
const timeoutMs = Number(argument('--timeout-ms', '3000'));
const tries = Number(argument('--tries', '3'));

async function udpOnce(host: string, port: number, text: string): Promise<{ reply: string; from: string }> {
  const socket = createSocket(host.includes(':') ? 'udp6' : 'udp4');
  try {
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no UDP reply within ${timeoutMs} ms`)), timeoutMs);
      socket.once('message', (message, peer) => {
        clearTimeout(timer);
        resolve({ reply: message.toString('utf8'), from: `${peer.address}:${peer.port}` });
      });
      socket.once('error', reject);
      socket.send(text, port, host);
    });
  } finally {
    socket.close();
  }
}

async function main(): Promise<unknown> {
  if (kind === 'udp') {
    const [host, port, text] = rest;
    let lastError: unknown;
    for (let attempt = 1; attempt <= tries; attempt++) {
      try {
        return { ok: true, attempt, ...(await udpOnce(host!, Number(port), text ?? 'ping')) };
      } catch (error) {
        lastError = error;
      }
    }
    return { ok: false, error: String(lastError) };
  }
  if (kind === 'http') {
    const response = await fetch(rest[0]!, { signal: AbortSignal.timeout(timeoutMs) });
    return { ok: response.ok, status: response.status, body: await response.text() };
  }
  if (kind === 'tcp') {
    const [host, port] = rest;
    return await new Promise((resolve) => {
      const socket = connect({ host: host!, port: Number(port) });
      const timer = setTimeout(() => {
        socket.destroy();
        resolve({ ok: false, error: 'ETIMEDOUT' });
      }, timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.destroy();
        resolve({ ok: true });
      });
      socket.once('error', (error: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        resolve({ ok: false, error: error.code ?? String(error) });
      });
    });
  }
  return { ok: false, error: `unknown probe ${kind}` };
}

main().then(
  (result) => process.stdout.write(`${JSON.stringify(result)}\n`),
  (error: unknown) => process.stdout.write(`${JSON.stringify({ ok: false, error: String(error) })}\n`),
);
