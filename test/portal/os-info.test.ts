import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { currentOsFacts, parseOsRelease } from '../../src/portal/os-info.ts';
import { userAgent } from '../../src/portal/user-agent.ts';
import { configureLogging, LogFilter } from '../../src/log/index.ts';
import { fatalExitMessage, logChannelEvent } from '../../src/portal/channel-log.ts';

describe('os facts', () => {
  test('maps os-release ID to the os_info display name and normalises numeric versions', () => {
    assert.deepEqual(parseOsRelease('NAME="Ubuntu"\nID=ubuntu\nVERSION_ID="22.04"\n'), { osType: 'Ubuntu', osVersion: '22.4.0' });
    assert.deepEqual(parseOsRelease('ID=alpine\nVERSION_ID=3.20.3\n'), { osType: 'Alpine Linux', osVersion: '3.20.3' });
    assert.deepEqual(parseOsRelease('ID=debian\nVERSION_ID="12"\n'), { osType: 'Debian', osVersion: '12.0.0' });
  });

  test('falls back to Linux and Unknown', () => {
    assert.deepEqual(parseOsRelease(''), { osType: 'Linux', osVersion: 'Unknown' });
    assert.deepEqual(parseOsRelease('ID=plan9\nVERSION_ID=rolling\n'), { osType: 'Linux', osVersion: 'rolling' });
  });

  test('this machine yields an ASCII user agent with a Rust arch name', () => {
    const ua = userAgent(currentOsFacts());

    assert.match(ua, /^[\x20-\x7e]+$/);
    assert.match(ua, / gateway\/1\.6\.0 \((x86_64|aarch64|[a-z0-9_]+); [^)]+\)$/);
    assert.doesNotMatch(ua, /\(x64[;)]/);
  });
});

describe('channel log lines', () => {
  test('a hiccup is logged at INFO with the reference wording', () => {
    const lines = captureLogs(() =>
      logChannelEvent({ kind: 'hiccup', delayMs: 750, maxElapsedMs: 86_400_000, error: 'websocket connection failed: HTTP error: 503 Service Unavailable - x' }, 'api.firezone.dev'),
    );

    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /INFO.*Hiccup in portal connection: Connection hiccup: websocket connection failed: HTTP error: 503 Service Unavailable - x/);
    assert.match(lines[0]!, /max_elapsed_time.*86400s/);
  });

  test('a dropped frame is a warning', () => {
    const lines = captureLogs(() => logChannelEvent({ kind: 'dropped', topic: 'gateway', event: 'foo', reason: 'unknown event `foo`' }, 'h'));

    assert.match(lines[0]!, /WARN.*Failed to deserialize message: unknown event `foo`/);
  });

  test('joining and joined are logged once each', () => {
    const lines = captureLogs(() => {
      logChannelEvent({ kind: 'stateChanged', state: 'joining', previous: 'connecting' }, 'h');
      logChannelEvent({ kind: 'stateChanged', state: 'joined', previous: 'joining' }, 'h');
    });

    assert.equal(lines.length, 2);
    assert.match(lines[0]!, /Connected to portal/);
    assert.match(lines[1]!, /Joined gateway room on portal/);
  });

  test('the fatal exit message is the reference chain', () => {
    assert.equal(
      fatalExitMessage({ code: 'tokenExpired', message: 'Authentication token expired' }),
      'Failed to start Gateway: Failed to login to portal: Authentication token expired',
    );
  });
});

function captureLogs(action: () => void): string[] {
  const lines: string[] = [];
  configureLogging({ filter: LogFilter.parse('info'), format: 'text', sink: { write: (line) => lines.push(line) } });
  action();
  return lines;
}
