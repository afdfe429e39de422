// A resource for end-to-end tests: a UDP echo server and an HTTP server that answers with the
// peer address it saw, both on one address.
//   node --import tsx tools/test-client/resource-server.ts --listen 10.88.0.2 --udp-port 7777 --http-port 8080
// Prints {"listening":...} once both are bound; stops on SIGTERM/SIGINT.
import { createSocket } from 'node:dgram';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

function argument(name: string, fallback: string): string {
  const index = process.argv.indexOf(name);
  return index >= 0 ? (process.argv[index + 1] ?? fallback) : fallback;
}

const host = argument('--listen', '127.0.0.1');
const udpPort = Number(argument('--udp-port', '7777'));
const httpPort = Number(argument('--http-port', '8080'));

const udp = createSocket(host.includes(':') ? 'udp6' : 'udp4');
udp.on('message', (message, peer) => udp.send(message, peer.port, peer.address));
await new Promise<void>((resolve) => udp.bind(udpPort, host, resolve));

const http = createServer((req, res) => {
  const body = JSON.stringify({ path: req.url, peer: req.socket.remoteAddress });
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
});
await new Promise<void>((resolve) => http.listen(httpPort, host, resolve));

process.stdout.write(`${JSON.stringify({ listening: host, udp: (udp.address() as AddressInfo).port, http: (http.address() as AddressInfo).port })}\n`);
const stop = (): void => {
  udp.close();
  http.close();
  process.exit(0);
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
