// Message content parsing (web/js/markdown.mjs): the node tree views draw with text nodes.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { mentionsMe, parse, plain, safeUrl } from '../../web/js/markdown.mjs';

const text = (v) => ({ t: 'text', v });

test('bold, italic, strike, code and code blocks', () => {
  assert.deepEqual(parse('a **b** *c* ~~d~~ `e*f*`'), [
    text('a '), { t: 'b', c: [text('b')] }, text(' '), { t: 'i', c: [text('c')] }, text(' '), { t: 's', c: [text('d')] }, text(' '), { t: 'code', v: 'e*f*' },
  ]);
  assert.deepEqual(parse('x\n```js\nlet a = "<b>";\n```\ny'), [text('x\n'), { t: 'pre', v: 'let a = "<b>";', lang: 'js' }, text('\ny')]);
  assert.deepEqual(parse('snake_case_name and 2 * 3 * 4'), [text('snake_case_name and 2 * 3 * 4')]);
  assert.deepEqual(parse('```unclosed'), [text('```unclosed')]);
});

test('links: bare http(s) URLs and [text](url); javascript: and data: stay text', () => {
  assert.deepEqual(parse('see https://example.com/a?b=1.'), [text('see '), { t: 'a', href: 'https://example.com/a?b=1', c: [text('https://example.com/a?b=1')] }, text('.')]);
  assert.deepEqual(parse('[**docs**](https://example.com)'), [{ t: 'a', href: 'https://example.com/', c: [{ t: 'b', c: [text('docs')] }] }]);
  for (const evil of ['[x](javascript:alert(1))', '[x](JaVaScRiPt:alert(1))', '[x](data:text/html,<script>)', '[x](vbscript:y)', 'javascript:alert(1)']) {
    const nodes = parse(evil);
    const walk = (ns) => ns.some((n) => n.t === 'a' || (n.c && walk(n.c)));
    assert.equal(walk(nodes), false, evil);
    assert.equal(plain(evil), evil);
  }
  assert.equal(safeUrl(' javascript:alert(1)'), null);
  assert.equal(safeUrl('mailto:a@b.c'), 'mailto:a@b.c');
});

test('custom emoji in the official client form, shortcodes and mentions', () => {
  assert.deepEqual(parse('hi originChats:<emoji>//chat.example:5613/42!'), [text('hi '), { t: 'emoji', id: '42' }, text('!')]);
  assert.deepEqual(parse(':party: @bob @&mods mail@example.com'), [
    { t: 'shortcode', name: 'party' }, text(' '), { t: 'mention', name: 'bob', role: false }, text(' '), { t: 'mention', name: 'mods', role: true }, text(' mail@example.com'),
  ]);
  assert.equal(plain('**hi** originChats:<emoji>//h/7', (id) => (id === '7' ? 'wave' : null)), 'hi :wave:');
});

test('mentionsMe: live pings, else content and replies', () => {
  assert.equal(mentionsMe({ content: 'x', pings: { users: ['Alice'], roles: [], replies: [] } }, 'alice'), true);
  assert.equal(mentionsMe({ content: '@alice', pings: { users: [], roles: [], replies: [] } }, 'alice'), false, 'pings are authoritative');
  assert.equal(mentionsMe({ content: 'hey @ALICE' }, 'alice'), true);
  assert.equal(mentionsMe({ content: 'hey @alicex' }, 'alice'), false);
  assert.equal(mentionsMe({ content: '@&mods' }, 'alice', ['mods']), true);
  assert.equal(mentionsMe({ content: 'ok', reply_to: { id: '1', user: 'alice' } }, 'alice'), true);
  assert.equal(mentionsMe({ content: 'ok', reply_to: { id: '1', user: 'alice' }, ping: false }, 'alice'), false);
});
