// The victim's steady request loop: a UDP echo request every `--interval-ms` to `<host> <port>`,
// one JSON line per request on stdout once it is answered or given up on:
//   {"seq":12,"at":<epoch ms sent>,"ok":true,"rtt":1.8}   or   {"seq":13,"at":...,"ok":false}
// Runs until stdin closes or SIGTERM.
//   node --import tsx tools/attacker/request-loop.ts 10.78.0.4 7 [--interval-ms 50] [--timeout-ms 1000]
import { createSocket } from 'node:dgram';

function argument(name: string, fallback: string): string {
  const index = process.argv.indexOf(name);
  return index >= 0 ? (process.argv[index + 1] ?? fallback) : fallback;
}

const [host, portText] = process.argv.slice(2);
const port = Number(portText);
const intervalMs = Number(argument('--interval-ms', '50'));
const timeoutMs = Number(argument('--timeout-ms', '1000'));

interface Outstanding {
  readonly at: number;
  readonly sentAt: number;
  readonly timer: NodeJS.Timeout;
}

const socket = createSocket(host!.includes(':') ? 'udp6' : 'udp4');
const outstanding = new Map<number, Outstanding>();
let seq = 0;

function report(line: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

socket.on('message', (message) => {
  const match = /^seq:(\d+)$/.exec(message.toString('utf8'));
  if (match === null) return;
  const n = Number(match[1]);
  const entry = outstanding.get(n);
  if (entry === undefined) return;
  outstanding.delete(n);
  clearTimeout(entry.timer);
  report({ seq: n, at: entry.at, ok: true, rtt: Math.round((performance.now() - entry.sentAt) * 10) / 10 });
});
socket.on('error', () => undefined);

const ticker = setInterval(() => {
  const n = seq++;
  const timer = setTimeout(() => {
    const entry = outstanding.get(n);
    if (entry === undefined) return;
    outstanding.delete(n);
    report({ seq: n, at: entry.at, ok: false });
  }, timeoutMs);
  outstanding.set(n, { at: Date.now(), sentAt: performance.now(), timer });
  socket.send(`seq:${n}`, port, host);
}, intervalMs);

const stop = (): void => {
  clearInterval(ticker);
  socket.close();
  process.exit(0);
};
process.stdin.on('end', stop);
process.stdin.resume();
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
