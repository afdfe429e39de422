#!/usr/bin/env node
import { main } from '../cli/main.ts';
import { startGateway } from '../runtime/gateway.ts';

const waitForSignal = (): Promise<'SIGINT' | 'SIGTERM'> =>
  new Promise((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });

const code = await main({
  argv: process.argv.slice(2),
  env: process.env,
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  startGateway,
  waitForSignal,
});
process.exitCode = code;
// Sockets or timers still open after a stop must not keep the process alive.
setTimeout(() => process.exit(code), 2000).unref();
