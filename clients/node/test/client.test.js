'use strict';
// @shopkeeper/client against a real `shopkeeper serve` (started by ./hub.js).
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('crypto');
const { Client, ShopkeeperError } = require('..');
const { startHub } = require('./hub');

let hub;
let sk;

before(async () => {
  hub = await startHub();
  sk = new Client(hub.address, { apiKey: hub.apiKey });
});

after(async () => {
  if (sk) sk.close();
  if (hub) await hub.stop();
});

const uid = () => crypto.randomUUID().slice(0, 8);

test('identify, page view and order with plain objects, a Date and ISO text; read back the 360° view', async () => {
  const run = uid();
  const email = `ann.${run}@example.org`;
  const who = await sk.identify({ identities: { email }, traits: { firstName: 'Ann', vip: false, tags: ['new'] } });
  assert.equal(who.created, true);
  assert.deepEqual(who.customer.traits, { firstName: 'Ann', vip: false, tags: ['new'] });

  const pv = await sk.record({ type: 'page_view', identities: { email }, ts: new Date(Date.now() - 60000),
    data: { url: '/shoes', referrer: 'https://search.example' }, idempotencyKey: `pv-${run}` });
  assert.equal(pv.outcome, 'APPLIED');
  const order = await sk.record({ type: 'order', identities: { email }, ts: new Date().toISOString(),
    data: { order_id: `O-${uid()}`, amount: 600, currency: 'EUR' } });
  assert.equal(order.outcome, 'APPLIED');
  assert.equal(order.customerId, who.customer.id);
  assert.equal(typeof order.interactionKey, 'number');

  const again = await sk.record({ type: 'page_view', identities: { email }, data: { url: '/shoes' },
    idempotencyKey: `pv-${run}` });
  assert.equal(again.outcome, 'DUPLICATE');

  const c = await sk.getCustomer({ email }, { recent: 10 });
  assert.equal(c.hardFacts.orders, 1); // a number, not the string '1'
  assert.equal(typeof c.hardFacts.interactions, 'number');
  assert.equal(c.hardFacts.totalSpend, 600);
  assert.ok(c.hardFacts.lastOrderAt instanceof Date);
  assert.equal(c.interactionCounts.page_view, 1);
  assert.equal(c.traits.firstName, 'Ann');
  const page = c.recentInteractions.find((i) => i.type === 'page_view');
  assert.deepEqual(page.data, { url: '/shoes', referrer: 'https://search.example' });
  assert.ok(page.ts instanceof Date && Math.abs(page.ts.getTime() - (Date.now() - 60000)) < 30000);
  // the central rules ran in the same write (rules/high_value.yaml)
  assert.ok('vip' in c.segments, JSON.stringify(c.segments));
  assert.ok(c.segments.vip instanceof Date);
  assert.equal(c.scores.engagement.value, 1);

  const d = await sk.decide({ customer: { email }, placement: 'home_hero', context: { page: '/shoes' } });
  assert.equal(d.customerId, c.id);
  assert.ok(Array.isArray(d.actions));
  for (const a of d.actions) assert.ok(a.payload === null || typeof a.payload === 'object');
});

test('a Struct-shaped mistake is an error naming the field, and nothing is sent', async () => {
  const ids = { email: 'x@example.org' };
  const cases = [
    [{ type: 'page_view', identities: ids, data: 'url=/shoes' }, /event\.data: must be a plain object/],
    [{ type: 'page_view', identities: ids, data: new Map([['url', '/']]) }, /event\.data: .*not a Map/],
    [{ type: 'page_view', identities: ids, data: [1, 2] }, /event\.data: .*an array/],
    [{ type: 'page_view', identities: ids, data: { url: '/', n: NaN } }, /event\.data\.n: NaN/],
    [{ type: 'page_view', identities: ids, data: { url: undefined } }, /event\.data\.url: undefined/],
    [{ type: 'page_view', identities: ids, data: { url: '/', big: 10n } }, /event\.data\.big: a BigInt/],
    [{ type: 'page_view', identities: ids, data: { url: '/', when: new Set() } }, /event\.data\.when: .*Set/],
    [{ type: 'page_view', identities: ids, traits: 'Ann' }, /event\.traits: must be a plain object/],
    [{ type: 'page_view', identities: ids, ts: 'yesterday' }, /event\.ts: "yesterday" is not an ISO 8601 time/],
    [{ type: 'page_view', identities: ids, ts: new Date('nope') }, /event\.ts: invalid date/],
    [{ type: 'page_view', identities: ids, ts: { seconds: 1 } }, /event\.ts: must be a Date/],
    [{ type: 'page_view', identities: 'ann@example.org' }, /event\.identities: must be an object/],
    [{ type: 'page_view', identities: { email: { v: 1 } } }, /event\.identities\.email: must be text/],
    [{ type: 'page_view', identities: ids, idempotency_key: 'k' }, /event\.idempotency_key: unknown field/],
  ];
  const cyclic = { url: '/' };
  cyclic.self = cyclic;
  cases.push([{ type: 'page_view', identities: ids, data: cyclic }, /event\.data\.self: refers back to itself/]);
  for (const [event, message] of cases) {
    await assert.rejects(sk.record(event), (err) => err instanceof TypeError && message.test(err.message), String(message));
  }
  await assert.rejects(sk.identify({ identities: ids, traits: new Date() }), /traits: must be a plain object/);
  await assert.rejects(sk.decide({ customer: { email: 'x@example.org' }, placement: 'p', context: 'web' }),
    /context: must be a plain object/);
  await assert.rejects(sk.getCustomer({ email: 'x@example.org' }), (err) => err instanceof ShopkeeperError && err.code === 'NOT_FOUND');
});

test('a refused event carries the BadRequest field violations', async () => {
  const err = await sk.record({ type: 'order', identities: { email: `bad.${uid()}@example.org` },
    data: { order_id: 'O-1', amount: -5 } }).catch((e) => e);
  assert.ok(err instanceof ShopkeeperError, String(err));
  assert.equal(err.code, 'INVALID_ARGUMENT');
  assert.deepEqual(err.fieldViolations.map((v) => v.field), ['event.data.amount']);
  assert.match(err.fieldViolations[0].description, /below the minimum/);
  const unknown = await sk.record({ type: 'page_veiw', identities: { email: 'a@example.org' } }).catch((e) => e);
  assert.equal(unknown.fieldViolations[0].field, 'event.type');
  assert.match(unknown.fieldViolations[0].description, /did you mean 'page_view'/);
});

test('the API key is checked: none or a wrong one is UNAUTHENTICATED', async () => {
  for (const apiKey of [undefined, 'sk_wrong']) {
    const other = new Client(hub.address, { apiKey });
    const err = await other.getCustomer({ email: 'a@example.org' }).catch((e) => e);
    other.close();
    assert.ok(err instanceof ShopkeeperError);
    assert.equal(err.code, 'UNAUTHENTICATED');
  }
});

test('stream: batches with back-pressure, every event acknowledged after commit, replays counted once', async () => {
  const run = uid();
  const events = Array.from({ length: 1200 }, (_, i) => ({
    type: 'page_view', identities: { cookie: `ck-${run}-${i % 50}` }, idempotencyKey: `s-${run}-${i}`,
    data: { url: `/p/${i}` },
  }));
  events[700] = { type: 'order', identities: { cookie: `ck-${run}-0` }, idempotencyKey: `s-${run}-700`,
    data: { amount: 5 } }; // no order_id: rejected, the rest still applied
  const s = sk.stream({ batchSize: 100, maxInFlight: 2 });
  for (const ev of events) await s.write(ev);
  const summary = await s.end();
  assert.equal(summary.applied, 1199);
  assert.equal(summary.rejected, 1);
  assert.deepEqual(summary.rejections, [{ index: 700, field: 'data.order_id', reason: 'required for order events' }]);
  assert.ok(s.maxSeenInFlight <= 2, `in flight ${s.maxSeenInFlight}`);
  assert.equal(s.batches, 12);

  const again = sk.stream({ batchSize: 500 });
  const statuses = await Promise.all(events.slice(0, 10).map((ev) => again.send(ev)));
  const summary2 = await again.end();
  assert.deepEqual(statuses.map((st) => st.outcome), Array(10).fill('DUPLICATE'));
  assert.equal(summary2.duplicates, 10);
  const c = await sk.getCustomer({ cookie: `ck-${run}-7` });
  assert.equal(c.hardFacts.interactions, 24);
});

test('stream: a bad event is a TypeError at write, before anything is sent', async () => {
  const s = sk.stream();
  await assert.rejects(s.write({ type: 'page_view', identities: { cookie: 'c' }, data: 5 }), /event 0\.data: must be a plain object/);
  const summary = await s.end();
  assert.deepEqual(summary, { applied: 0, duplicates: 0, rejected: 0, rejections: [] });
});

test('watch: committed changes arrive as plain objects with Dates and numbers', async () => {
  const email = `w.${uid()}@example.org`;
  const watching = sk.watch({ kinds: ['interaction'], eventTypes: ['click'] });
  const got = (async () => {
    for await (const change of watching) {
      if (change.kind === 'interaction') { watching.cancel(); return change; }
    }
    return null;
  })();
  // the watch is live once the server has the call; record until the change shows up
  let change = null;
  for (let i = 0; i < 50 && change === null; i++) {
    await sk.record({ type: 'click', identities: { email }, data: { url: '/x', target: `b${i}` } });
    change = await Promise.race([got, new Promise((r) => setTimeout(() => r(null), 200))]);
  }
  assert.ok(change, 'no change arrived');
  assert.equal(change.eventType, 'click');
  assert.equal(typeof change.cursor, 'number');
  assert.ok(change.at instanceof Date);
  const c = await sk.getCustomer({ email });
  assert.equal(change.customerId, c.id);
});
