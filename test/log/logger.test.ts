import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { configureLogging, createLogger, errorChain, Level, LogFilter, registerSecret } from '../../src/log/index.ts';

function capture(spec: string, format: 'human' | 'json' = 'human'): string[] {
  const lines: string[] = [];
  configureLogging({
    filter: LogFilter.parse(spec),
    format,
    sink: { write: (line) => lines.push(line) },
    clock: () => new Date('2025-07-18T03:04:54.123Z'),
  });
  return lines;
}

describe('log filter', () => {
  test('a bare level is the default', () => {
    const f = LogFilter.parse('info');
    assert.equal(f.levelFor('anything'), Level.Info);
    assert.equal(LogFilter.parse('').levelFor('x'), Level.Off);
  });

  test('the most specific target wins, by module path prefix', () => {
    const f = LogFilter.parse('firezone_gateway=debug,warn,firezone_gateway::portal=trace');
    assert.equal(f.levelFor('firezone_gateway'), Level.Debug);
    assert.equal(f.levelFor('firezone_gateway::runtime'), Level.Debug);
    assert.equal(f.levelFor('firezone_gateway::portal'), Level.Trace);
    assert.equal(f.levelFor('firezone_gateway_other'), Level.Warn);
    assert.equal(f.levelFor('snownet'), Level.Warn);
  });

  test('a target without a level enables everything for it; spans are ignored', () => {
    const f = LogFilter.parse('snownet,phoenix_channel[connect{host}]=debug');
    assert.equal(f.levelFor('snownet::node'), Level.Trace);
    assert.equal(f.levelFor('phoenix_channel'), Level.Debug);
    assert.equal(f.levelFor('other'), Level.Off);
  });

  test('levels are case-insensitive; off silences', () => {
    assert.equal(LogFilter.parse('WARN').levelFor('x'), Level.Warn);
    assert.equal(LogFilter.parse('info,wire=off').levelFor('wire::net'), Level.Off);
  });

  test('invalid directives are rejected with a reason', () => {
    assert.throws(() => LogFilter.parse('firezone=loud'), /invalid log level `loud`/);
    assert.throws(() => LogFilter.parse('bad target=info'), /invalid log target/);
  });
});

describe('logger', () => {
  test('text lines have time, right-aligned level, target, message and fields', () => {
    const lines = capture('debug');
    const log = createLogger('firezone_gateway');
    log.info('Connected to portal', { host: 'api.firezone.dev', attempt: 2, note: 'two words' });
    log.trace('not shown');
    assert.deepEqual(lines, [
      '2025-07-18T03:04:54.123Z  INFO firezone_gateway: Connected to portal host=api.firezone.dev attempt=2 note="two words"\n',
    ]);
  });

  test('JSON lines for log shippers', () => {
    const lines = capture('info', 'json');
    createLogger('snownet').warn('Tunnel error', { error: new Error('outer', { cause: new Error('inner') }) });
    assert.deepEqual(JSON.parse(lines[0]!), {
      timestamp: '2025-07-18T03:04:54.123Z',
      level: 'WARN',
      target: 'snownet',
      message: 'Tunnel error',
      error: 'outer: inner',
    });
  });

  test('loggers created before a reconfiguration follow it', () => {
    const log = createLogger('late');
    let lines = capture('off');
    log.info('hidden');
    assert.equal(lines.length, 0);
    lines = capture('late=info');
    log.info('shown');
    assert.equal(lines.length, 1);
  });

  test('a registered secret never appears in a line', () => {
    const secret = '.SFMyNTY.g2gDaANtAAAAJGM4OWJjYzhjLTkzOTItNGRhZS1hNDBkLTg4OGFlZjZkMjhlMG';
    registerSecret(secret);
    for (const format of ['human', 'json'] as const) {
      const lines = capture('trace', format);
      const log = createLogger('firezone_gateway');
      log.info(`url wss://x/?token=${secret}&a=b`, {
        token: secret,
        nested: { url: `ws://h?token=${secret}` },
        error: new Error(`bad ${secret}`),
      });
      assert.equal(lines.length, 1);
      assert.ok(!lines[0]!.includes(secret), lines[0]);
      assert.ok(lines[0]!.includes('<redacted>'));
    }
  });

  test('error chains follow causes', () => {
    assert.equal(errorChain(new Error('a', { cause: new Error('b', { cause: 'c' }) })), 'a: b: c');
    assert.equal(errorChain('plain'), 'plain');
  });
});
