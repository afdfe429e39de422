import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hasNetAdminCapability, hasRequiredPermissions } from '../../src/cli/permissions.ts';

const status = (capEff: string): string => `Name:\tnode\nUid:\t1000\t1000\t1000\t1000\nCapInh:\t0000000000000000\nCapEff:\t${capEff}\nCapBnd:\t000001ffffffffff\n`;

test('CAP_NET_ADMIN is bit 12 of CapEff', () => {
  assert.equal(hasNetAdminCapability(status('0000000000001000')), true);
  assert.equal(hasNetAdminCapability(status('000001ffffffffff')), true);
  assert.equal(hasNetAdminCapability(status('0000000000000fff')), false);
  assert.equal(hasNetAdminCapability(status('0000000000000000')), false);
  assert.equal(hasNetAdminCapability('Name:\tnode\n'), false);
});

test('root passes; others need the capability; unreadable status fails closed', () => {
  assert.equal(hasRequiredPermissions(0, () => status('0')), true);
  assert.equal(hasRequiredPermissions(1000, () => status('0000000000001000')), true);
  assert.equal(hasRequiredPermissions(1000, () => status('0')), false);
  assert.equal(hasRequiredPermissions(1000, () => { throw new Error('ENOENT'); }), false);
});
