import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, statSync, writeFileSync, mkdirSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  fileIdStore,
  generateGatewayId,
  ID_ERROR_MESSAGE,
  parsePersistedId,
  resolveGatewayId,
  type IdStore,
} from '../../src/cli/identity.ts';

function tempPath(): string {
  return join(mkdtempSync(join(tmpdir(), 'fz-id-')), 'firezone', 'gateway_id');
}

describe('gateway identity', () => {
  test('FIREZONE_ID wins and is used verbatim', () => {
    const path = tempPath();
    assert.deepEqual(resolveGatewayId('  my id ', fileIdStore(path)), { id: '  my id ', source: 'env' });
    assert.throws(() => readFileSync(path), /ENOENT/, 'nothing persisted');
  });

  test('a missing file: generate 64 hex, persist as JSON with the reference modes', () => {
    const path = tempPath();
    const first = resolveGatewayId(undefined, fileIdStore(path));
    assert.equal(first.source, 'generated');
    assert.match(first.id, /^[0-9a-f]{64}$/);
    assert.equal(readFileSync(path, 'utf8'), JSON.stringify({ id: first.id }));
    assert.equal(statSync(path).mode & 0o777, 0o640);
    assert.equal(statSync(join(path, '..')).mode & 0o777, 0o770);
  });

  test('the second start keeps the identity of the first (the reference changes it)', () => {
    const path = tempPath();
    const first = resolveGatewayId(undefined, fileIdStore(path));
    const second = resolveGatewayId(undefined, fileIdStore(path));
    assert.deepEqual(second, { id: first.id, source: 'file' });
  });

  test('a plain id file is trimmed', () => {
    const path = tempPath();
    mkdirSync(join(path, '..'), { recursive: true });
    writeFileSync(path, 'abc123\n');
    assert.deepEqual(resolveGatewayId(undefined, fileIdStore(path)), { id: 'abc123', source: 'file' });
  });

  test('an empty or whitespace file is replaced, not fatal', () => {
    for (const content of ['', '\n  \n', '{"id":""}']) {
      const path = tempPath();
      mkdirSync(join(path, '..'), { recursive: true });
      writeFileSync(path, content);
      const resolved = resolveGatewayId(undefined, fileIdStore(path));
      assert.equal(resolved.source, 'generated');
      assert.equal(readFileSync(path, 'utf8'), JSON.stringify({ id: resolved.id }));
    }
  });

  test('parsing the persisted forms', () => {
    assert.equal(parsePersistedId('{"id":"deadbeef"}\n'), 'deadbeef');
    assert.equal(parsePersistedId(' {"id": " x "} '), 'x');
    assert.equal(parsePersistedId('{4694E56C-7643-4A15-9DF3-638E5B05F570}'), '{4694E56C-7643-4A15-9DF3-638E5B05F570}');
    assert.equal(parsePersistedId('{"other":1}'), undefined, 'a JSON object without an id is corrupt');
    assert.equal(parsePersistedId(''), undefined);
  });

  test('generated ids are sha256 of a UUID string', () => {
    assert.equal(
      generateGatewayId('4694E56C-7643-4A15-9DF3-638E5B05F570'),
      'c9cc2a8a01f9d3d6b2c26719965709196ae2c79214a837e28f0a751af1e2f2ca',
    );
    assert.notEqual(generateGatewayId(), generateGatewayId());
  });

  test('read and write failures give the reference message', () => {
    const unreadable: IdStore = { path: 'x', read: () => { throw new Error('EACCES'); }, write: () => undefined };
    assert.throws(() => resolveGatewayId(undefined, unreadable), { message: ID_ERROR_MESSAGE });
    const unwritable: IdStore = { path: 'x', read: () => undefined, write: () => { throw new Error('EROFS'); } };
    assert.throws(() => resolveGatewayId(undefined, unwritable), { message: ID_ERROR_MESSAGE });
  });

  test('an unwritable directory gives the reference message', { skip: process.getuid?.() === 0 ? 'root can write anywhere' : undefined }, () => {
    const dir = mkdtempSync(join(tmpdir(), 'fz-ro-'));
    chmodSync(dir, 0o500);
    assert.throws(() => resolveGatewayId(undefined, fileIdStore(join(dir, 'sub', 'gateway_id'))), { message: ID_ERROR_MESSAGE });
  });
});
