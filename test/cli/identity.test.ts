import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  deriveFromMachineId,
  fileIdHost,
  generateGatewayId,
  GATEWAY_APP_ID,
  ID_ERROR_MESSAGE,
  parseIdJson,
  resolveGatewayId,
  type IdHost,
} from '../../src/cli/identity.ts';
import { errorChain } from '../../src/log/index.ts';

const MACHINE_ID = '0123456789abcdef0123456789abcdef\n';
const DERIVED = createHmac('sha256', GATEWAY_APP_ID).update(MACHINE_ID).digest('hex');
const HEX = 'a'.repeat(64);

interface Memory extends IdHost {
  file: string | undefined;
  writes: number;
}

function memory(file: string | undefined, machineId: string | null = MACHINE_ID, faults: { chmodFile?: boolean; write?: boolean } = {}): Memory {
  const host: Memory = {
    path: '/var/lib/firezone/gateway_id',
    file,
    writes: 0,
    prepareDirectory: () => undefined,
    readIdFile: () => {
      if (host.file === undefined) throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
      return Buffer.from(host.file);
    },
    restrictIdFile: () => {
      if (faults.chmodFile) throw Object.assign(new Error('EPERM'), { code: 'EPERM' });
    },
    readMachineId: () => {
      if (machineId === null) throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
      return Buffer.from(machineId);
    },
    writeIdFile: (content, replaceBlank) => {
      if (faults.write || (host.file !== undefined && !replaceBlank)) throw new Error('Failed to write firezone-id file', { cause: new Error('File exists (os error 17)') });
      host.file = content;
      host.writes++;
    },
  };
  return host;
}

describe('gateway identity (1.6.0)', () => {
  test('FIREZONE_ID wins; an empty one means unset', () => {
    assert.deepEqual(resolveGatewayId('env-id', memory(`{"id":"${HEX}"}`)), { id: 'env-id', source: 'env' });
    assert.equal(resolveGatewayId('', memory(`{"id":"${HEX}"}`)).id, HEX);
  });

  const cases: Array<[string, string | undefined, string | null, string, string]> = [
    // name, id file, machine id, expected id, expected source
    ['the JSON id file (as written by 1.4.x and 1.6.0)', `{"id":"${HEX}"}`, MACHINE_ID, HEX, 'file'],
    ['JSON with spaces and other keys', ` { "other": 1, "id": "${HEX}" }\n`, null, HEX, 'file'],
    ['no file: derived from /etc/machine-id, newline included', undefined, MACHINE_ID, DERIVED, 'machine-id'],
    ['an empty file: derived from /etc/machine-id', '', MACHINE_ID, DERIVED, 'machine-id'],
    ['a whitespace file: derived from /etc/machine-id', ' \n', MACHINE_ID, DERIVED, 'machine-id'],
    ['a plain id written for 1.4.x: its raw text, as 1.4.x used it', 'my-gateway\n', MACHINE_ID, 'my-gateway\n', 'legacy-file'],
    ['JSON without a string id: its raw text', '{"id":42}', MACHINE_ID, '{"id":42}', 'legacy-file'],
    ['a repeated id key (serde rejects it): its raw text', '{"id":"a","id":"b"}', null, '{"id":"a","id":"b"}', 'legacy-file'],
  ];
  for (const [name, file, machineId, id, source] of cases) {
    test(name, () => {
      const host = memory(file, machineId);
      const resolved = resolveGatewayId(undefined, host);
      assert.equal(resolved.id, id);
      assert.equal(resolved.source, source);
      assert.equal(host.writes, 0);
    });
  }

  test('the legacy case says so at WARN; the JSON file on a host with a machine id notes the 1.4.x JSON-text identity at INFO', () => {
    assert.equal(resolveGatewayId(undefined, memory('my-gateway')).note?.level, 'warn');
    assert.match(resolveGatewayId(undefined, memory('my-gateway')).note!.message, /as gateways up to 1\.4\.17 did/);
    const json = resolveGatewayId(undefined, memory(`{"id":"${HEX}"}`));
    assert.equal(json.note?.level, 'info');
    assert.match(json.note!.message, /set FIREZONE_ID to that text/);
    assert.equal(resolveGatewayId(undefined, memory(`{"id":"${HEX}"}`, null)).note, undefined);
    assert.equal(resolveGatewayId(undefined, memory(undefined)).note, undefined);
  });

  test('neither file nor machine id: a new id, written as JSON', () => {
    const host = memory(undefined, null);
    const resolved = resolveGatewayId(undefined, host);
    assert.equal(resolved.source, 'generated');
    assert.match(resolved.id, /^[0-9a-f]{64}$/);
    assert.equal(host.file, JSON.stringify({ id: resolved.id }));
    assert.deepEqual(resolveGatewayId(undefined, host), { id: resolved.id, source: 'file' });
  });

  test('a blank file without a machine id is replaced (1.6.0 fails on it)', () => {
    const host = memory('', null);
    assert.equal(resolveGatewayId(undefined, host).source, 'generated');
    assert.equal(host.writes, 1);
  });

  test('an id file 1.6.0 cannot restrict to 0640 is passed over, as by 1.6.0', () => {
    assert.deepEqual(resolveGatewayId(undefined, memory(`{"id":"${HEX}"}`, MACHINE_ID, { chmodFile: true })), { id: DERIVED, source: 'machine-id' });
    assert.throws(() => resolveGatewayId(undefined, memory(`{"id":"${HEX}"}`, null, { chmodFile: true })), (error: unknown) => {
      assert.equal(errorChain(error), `${ID_ERROR_MESSAGE}: Failed to write firezone-id file: File exists (os error 17)`);
      return true;
    });
  });

  test('the JSON parser accepts what serde accepts for the id file', () => {
    assert.equal(parseIdJson('{"id":"x"}'), 'x');
    assert.equal(parseIdJson('{"id":""}'), '');
    assert.equal(parseIdJson('{"ids":"x"}'), undefined);
    assert.equal(parseIdJson('["x"]'), undefined);
    assert.equal(parseIdJson('{"nested":{"id":"a"},"id":"b"}'), 'b');
    assert.equal(parseIdJson('x'), undefined);
  });

  test('the machine id derivation and the generated form', () => {
    assert.equal(deriveFromMachineId(Buffer.from(MACHINE_ID)), DERIVED);
    assert.match(DERIVED, /^[0-9a-f]{64}$/);
    assert.equal(generateGatewayId('x'), '2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881');
  });

  test('on disk: the directory is 0770, a generated file 0640 and never overwritten', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fz-id-'));
    try {
      const path = join(dir, 'state', 'gateway_id');
      const host = fileIdHost(path, join(dir, 'no-machine-id'));
      const first = resolveGatewayId(undefined, host);
      assert.equal(first.source, 'generated');
      assert.equal(statSync(join(dir, 'state')).mode & 0o777, 0o770);
      assert.equal(statSync(path).mode & 0o777, 0o640);
      assert.equal(readFileSync(path, 'utf8'), JSON.stringify({ id: first.id }));
      assert.deepEqual(resolveGatewayId(undefined, host), { id: first.id, source: 'file' });

      writeFileSync(join(dir, 'machine-id'), MACHINE_ID);
      writeFileSync(path, 'legacy\n');
      assert.deepEqual(resolveGatewayId(undefined, fileIdHost(path, join(dir, 'machine-id'))).id, 'legacy\n');
      rmSync(path);
      assert.equal(resolveGatewayId(undefined, fileIdHost(path, join(dir, 'machine-id'))).id, DERIVED);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
