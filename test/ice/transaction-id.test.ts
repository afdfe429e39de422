import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { TransactionIds, transactionWord } from '../../src/ice/index.ts';
import { seededRandom } from '../../src/util/random.ts';

describe('transaction ids carrying a tag', () => {
  test('the tag comes back out, and ids of one tag share no visible bits', () => {
    const rng = seededRandom(5);
    const ids = new TransactionIds(rng);
    const firstBytes = new Set<number>();
    for (let i = 0; i < 200; i++) {
      const tag = i % 2 === 0 ? 0x123456 : (rng.u32() >>> 0);
      const id = new Uint8Array(12);
      ids.fill(id, tag, rng);
      assert.equal(ids.tagOf(id), tag);
      if (i % 2 === 0) firstBytes.add(id[0]!);
    }
    assert.ok(firstBytes.size > 50, `the first byte of one tag's ids took only ${firstBytes.size} values`);
  });

  test('another node (another key) reads some other tag; a changed byte changes the tag', () => {
    const rng = seededRandom(6);
    const ids = new TransactionIds(rng);
    const other = new TransactionIds(rng);
    const id = new Uint8Array(12);
    ids.fill(id, 42, rng);
    assert.notEqual(other.tagOf(id), 42);
    for (let byte = 0; byte < 12; byte++) {
      const changed = id.slice();
      changed[byte] = changed[byte]! ^ 1;
      assert.ok(ids.tagOf(changed) !== 42 || transactionWord(changed) !== transactionWord(id), `byte ${byte}`);
    }
  });
});
