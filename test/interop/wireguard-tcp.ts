// Test-only TCP transfer endpoints for test/interop/wireguard.test.ts, run inside namespaces.
//   recv <ip> <port>                 prints {"listening":true}, then {"bytes":n,"sha256":hex,"ms":t}
//   send <ip> <port> <bytes> <seed>  sends a deterministic stream, prints {"bytes":n,"sha256":hex}
import { createHash } from 'node:crypto';
import { connect, createServer } from 'node:net';

const [mode, host = '', portText = '0', bytesText = '0', seedText = '1'] = process.argv.slice(2);
const port = Number(portText);

if (mode === 'recv') {
  const server = createServer((socket) => {
    const hash = createHash('sha256');
    const start = performance.now();
    let bytes = 0;
    socket.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      bytes += chunk.length;
    });
    socket.on('end', () => {
      const ms = Math.round(performance.now() - start);
      console.log(JSON.stringify({ bytes, sha256: hash.digest('hex'), ms }));
      socket.end();
      server.close();
    });
  });
  server.listen(port, host, () => console.log(JSON.stringify({ listening: true })));
} else if (mode === 'send') {
  const total = Number(bytesText);
  let state = Number(seedText) >>> 0 || 1;
  const CHUNK = 64 * 1024;
  const hash = createHash('sha256');
  let sent = 0;
  const socket = connect(port, host, () => {
    const pump = (): void => {
      while (sent < total) {
        const length = Math.min(CHUNK, total - sent);
        const chunk = Buffer.allocUnsafe(length);
        for (let i = 0; i + 4 <= length; i += 4) {
          state ^= state << 13;
          state ^= state >>> 17;
          state ^= state << 5;
          chunk.writeUInt32LE(state >>> 0, i);
        }
        for (let i = length - (length % 4); i < length; i++) chunk[i] = i & 0xff;
        hash.update(chunk);
        sent += length;
        if (!socket.write(chunk)) {
          socket.once('drain', pump);
          return;
        }
      }
      socket.end(() => console.log(JSON.stringify({ bytes: sent, sha256: hash.digest('hex') })));
    };
    pump();
  });
  socket.resume();
} else {
  console.error('usage: recv <ip> <port> | send <ip> <port> <bytes> <seed>');
  process.exit(2);
}
