'use strict';
// The official Segment Node SDK (@segment/analytics-node), unchanged but for its host, against
// the hub's Segment adapter; the hub's side is read back with @shopkeeper/client.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('crypto');
const { Analytics } = require('@segment/analytics-node');
const { Client } = require('..');
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

function sdk(errors) {
  const analytics = new Analytics({ writeKey: hub.writeKey, host: hub.segmentUrl, flushInterval: 50 });
  analytics.on('error', (err) => errors.push(err));
  return analytics;
}

test('analytics-node: identify, page, order and a custom event land on one customer, rules and all', async () => {
  const run = crypto.randomUUID().slice(0, 8);
  const userId = `user-${run}`;
  const errors = [];
  const analytics = sdk(errors);
  analytics.identify({ userId, anonymousId: `anon-${run}`, traits: { email: `Bea.${run}@Example.org`, name: 'Bea' } });
  analytics.page({ userId, name: 'Home', properties: { url: 'https://shop.test/' } });
  analytics.track({ userId, event: 'Product Added', properties: { product_id: 'p-1', price: 350, quantity: 2 } });
  await analytics.flush();
  analytics.track({ userId, event: 'Order Completed', messageId: `order-${run}`,
    properties: { order_id: `O-${run}`, revenue: 700, currency: 'EUR', products: [{ product_id: 'p-1' }] } });
  analytics.track({ userId, event: 'Wishlist Shared', properties: { 'share via': 'email' } });
  await analytics.closeAndFlush();
  assert.deepEqual(errors, []);

  const c = await sk.getCustomer({ customer_id: userId }, { recent: 20 });
  const ids = c.identities.map((i) => `${i.namespace}:${i.value}`).sort();
  assert.deepEqual(ids, [`cookie:anon-${run}`, `customer_id:${userId}`, `email:bea.${run}@example.org`]);
  assert.equal(c.traits.name, 'Bea');
  const types = c.recentInteractions.map((i) => i.type).sort();
  assert.deepEqual(types, ['cart_add', 'custom', 'identify', 'order', 'page_view']);
  const order = c.recentInteractions.find((i) => i.type === 'order').data;
  assert.equal(order.order_id, `O-${run}`);
  assert.equal(order.amount, 700);
  assert.equal(order.items, 1);
  assert.equal(order.context.library.name, '@segment/analytics-node');
  const custom = c.recentInteractions.find((i) => i.type === 'custom').data;
  assert.equal(custom.name, 'Wishlist Shared');
  assert.equal(custom.share_via, 'email');
  assert.equal(c.hardFacts.orders, 1);
  assert.ok('vip' in c.segments, JSON.stringify(c.segments)); // rules/high_value.yaml, in the same write
  assert.equal(c.scores.engagement.value, 1);

  // the same messageId again: acknowledged, not counted twice
  const again = sdk(errors);
  again.track({ userId, event: 'Order Completed', messageId: `order-${run}`,
    properties: { order_id: `O-${run}`, revenue: 700 } });
  await again.closeAndFlush();
  assert.deepEqual(errors, []);
  const after = await sk.getCustomer({ customer_id: userId });
  assert.equal(after.hardFacts.orders, 1);
  assert.equal(after.hardFacts.totalSpend, 700);
  assert.equal(after.hardFacts.interactions, c.hardFacts.interactions);
});

test('analytics-node: a refused message is reported by the SDK, and nothing is recorded', async () => {
  const errors = [];
  const analytics = sdk(errors);
  const userId = `refused-${crypto.randomUUID().slice(0, 8)}`;
  analytics.track({ userId, event: 'Order Completed', properties: { order_id: 'x', revenue: 'a lot' } });
  await analytics.closeAndFlush();
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, 'delivery_failure');
  assert.equal(String(errors[0].reason), 'Error: [400] Bad Request'); // not retried: the SDK drops a 400
  await assert.rejects(sk.getCustomer({ customer_id: userId }), (err) => err.code === 'NOT_FOUND');
});
