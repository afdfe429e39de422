import { readFileSync } from 'node:fs';
import { join } from 'node:path';
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
    env: withCredentialToken(process.env),
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
    startGateway,
    waitForSignal,
  });
  process.exitCode = code;
  // Sockets or timers still open after a stop must not keep the process alive.
  setTimeout(() => process.exit(code), 2000).unref();
}

/**
 * The token as a systemd credential (`LoadCredential=FIREZONE_TOKEN:...`, 1.6.0): used when
 * neither the argument nor FIREZONE_TOKEN gives one (the argument still wins over both).
 */
function withCredentialToken(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const directory = env['CREDENTIALS_DIRECTORY'];
  if ((env['FIREZONE_TOKEN'] ?? '') !== '' || directory === undefined || directory === '') return env;
  try {
    const token = readFileSync(join(directory, 'FIREZONE_TOKEN'), 'utf8').trim();
    return token === '' ? env : { ...env, FIREZONE_TOKEN: token };
  } catch {
    return env;
  }
}
