// admin-model.mjs without a DOM: permissions, which screens are offered, invite links, the
// request/answer pairing.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  PERMISSIONS, Requests, canManageRole, describeInvite, inviteCode, permissionsOf, rolesInOrder, sectionsFor, splitList, until,
} from '../../web/js/admin-model.mjs';

const ROLES = {
  owner: { id: 'o', position: 0, permissions: ['administrator'] },
  admin: { id: 'a', position: 1, permissions: ['administrator'] },
  moderator: { id: 'm', position: 2, permissions: ['manage_messages', 'manage_threads', 'view_audit_log'] },
  user: { id: 'u', position: 3, permissions: ['send_messages', 'read_message_history'] },
  helper: { id: 'h', position: 4, permissions: ['manage_roles'] },
};
const ALL_CAPS = new Set(['invite_create', 'bot_create']);
const ids = (perms, caps = ALL_CAPS) => sectionsFor(perms, caps).map((s) => s.id);

test('owner and administrator hold every permission; others the union of their roles', () => {
  assert.equal(permissionsOf(['owner'], {}).size, PERMISSIONS.length, 'owner needs no roles_list to be everything');
  assert.deepEqual([...permissionsOf(['admin'], ROLES)].sort(), [...PERMISSIONS].sort());
  assert.deepEqual([...permissionsOf(['moderator', 'user'], ROLES)].sort(),
    ['manage_messages', 'manage_threads', 'read_message_history', 'send_messages', 'view_audit_log']);
  assert.equal(permissionsOf(['ghost'], ROLES).size, 0, 'an unknown role grants nothing');
  assert.equal(permissionsOf(undefined, undefined).size, 0);
});

test('a plain user is offered no admin screen; each permission opens exactly its screens', () => {
  assert.deepEqual(ids(permissionsOf(['user'], ROLES)), []);
  assert.deepEqual(ids(permissionsOf(['moderator'], ROLES)), ['audit']);
  assert.deepEqual(ids(permissionsOf(['helper'], ROLES)), ['roles', 'members']);
  assert.deepEqual(ids(new Set(['manage_server'])), ['server', 'invites', 'webhooks']);
  assert.deepEqual(ids(new Set(['manage_channels'])), ['channels']);
  assert.deepEqual(ids(permissionsOf(['owner'], ROLES)),
    ['server', 'invites', 'channels', 'roles', 'members', 'webhooks', 'bots', 'audit']);
  // A feature the server does not offer is not offered either.
  assert.deepEqual(ids(permissionsOf(['owner'], ROLES), new Set()),
    ['server', 'channels', 'roles', 'members', 'webhooks', 'audit']);
});

test('role hierarchy: owners manage all; others only below their highest role, never owner/admin', () => {
  const role = (name) => ({ ...ROLES[name], name });
  assert.ok(canManageRole(['owner'], ROLES, role('admin')));
  assert.ok(!canManageRole(['admin'], ROLES, role('owner')));
  assert.ok(!canManageRole(['admin'], ROLES, role('admin')));
  assert.ok(canManageRole(['admin'], ROLES, role('moderator')));
  assert.ok(!canManageRole(['helper'], ROLES, role('user')), 'user sits above helper');
  assert.ok(!canManageRole(['user'], ROLES, role('helper')), 'no manage_roles');
});

test('invite codes come from /invite/CODE or ?invite=CODE and nothing else', () => {
  assert.equal(inviteCode({ pathname: '/invite/Ab3dEf9', search: '' }), 'Ab3dEf9');
  assert.equal(inviteCode({ pathname: '/invite/Ab3dEf9/', search: '' }), 'Ab3dEf9');
  assert.equal(inviteCode({ pathname: '/', search: '?invite=XyZ12' }), 'XyZ12');
  assert.equal(inviteCode({ pathname: '/', search: '' }), null);
  assert.equal(inviteCode({ pathname: '/', search: '?invite=%3Cscript%3E' }), null, 'only code characters');
  assert.equal(inviteCode({ pathname: '/invite/a/b', search: '' }), null);
});

test('an invite reads as its uses and state', () => {
  const now = 1_000_000_000_000;
  const inv = { uses: 1, max_uses: 3, expires_at: now / 1000 + 7200, revoked: false };
  assert.equal(describeInvite(inv, now), '1/3 uses · expires in 2 h');
  assert.equal(describeInvite({ ...inv, revoked: true }, now), '1/3 uses · revoked');
  assert.equal(describeInvite({ ...inv, uses: 3 }, now), '3/3 uses · used up');
  assert.equal(describeInvite({ ...inv, expires_at: now / 1000 - 1 }, now), '1/3 uses · expired');
  assert.equal(describeInvite({ uses: 0, max_uses: null, expires_at: null, revoked: false }, now), '0 uses · never expires');
  assert.equal(until(now / 1000 + 86_399.5, now), 'in 1 d', 'a day made a moment ago');
  assert.equal(until(now / 1000 + 3599, now), 'in 1 h');
  assert.equal(until(now / 1000 + 20, now), 'in 1 min');
});

test('helpers: roles by position, comma lists', () => {
  assert.deepEqual(rolesInOrder(ROLES).map((r) => r.name), ['owner', 'admin', 'moderator', 'user', 'helper']);
  assert.deepEqual(splitList(' user, !muted ,,admin '), ['user', '!muted', 'admin']);
});

test('requests are paired with their answers by listener; errors reject; others pass through', async () => {
  const sent = [];
  let online = true;
  const r = new Requests((f) => online && sent.push(f) > 0);
  const a = r.request({ cmd: 'invite_list' });
  const b = r.request({ cmd: 'invite_revoke', code: 'x' });
  assert.deepEqual(sent.map((f) => f.listener), ['admin:1', 'admin:2']);
  assert.equal(r.handle({ cmd: 'message_new', listener: 'send:abc' }), false, 'not ours');
  assert.equal(r.handle({ cmd: 'roles_list', roles: {} }), false, 'a broadcast');
  assert.equal(r.handle({ cmd: 'error', val: 'Invite not found', code: 'not_found', listener: 'admin:2' }), true);
  assert.equal(r.handle({ cmd: 'invite_list', invites: [], listener: 'admin:1' }), true);
  assert.deepEqual((await a).invites, []);
  await assert.rejects(b, (e) => e.name === 'AdminError' && e.code === 'not_found' && e.message === 'Invite not found');
  assert.equal(r.handle({ cmd: 'invite_list', listener: 'admin:1' }), true, 'a late duplicate is still ours, and ignored');

  const c = r.request({ cmd: 'users_list' });
  r.dropAll();
  await assert.rejects(c, (e) => e.code === 'offline');
  online = false;
  await assert.rejects(r.request({ cmd: 'users_list' }), (e) => e.code === 'offline');
});
