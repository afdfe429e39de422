import { main } from '../cli/main.ts';
import { startGateway } from '../runtime/gateway.ts';

const waitForSignal = (): Promise<'SIGINT' | 'SIGTERM'> =>
  new Promise((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });

/** Runs the gateway command in this process and exits with its code. */
export async function run(): Promise<void> {
  // A reader that goes away (EPIPE) must not end the gateway; the logger stops writing quietly.
  process.stderr.on('error', () => undefined);
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
}
