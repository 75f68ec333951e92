// Compiled by tests/test_node_client.py with `tsc --noEmit --strict`: the README's usage must type-check
// against index.d.ts exactly as a TypeScript user writes it.
import { Client, ShopkeeperError, toTimestamp, type Customer, type DecideResponse, type EventStatus } from '../../index';

async function main(): Promise<void> {
  const hub = new Client('127.0.0.1:50051', { apiKey: 'sk_test', deadlineMs: 5000, tls: false });
  const who = await hub.identify({ identities: { email: 'ann@example.com' }, traits: { firstName: 'Ann' } });
  const created: boolean = who.created;
  const st: EventStatus = await hub.record({
    type: 'order', identities: { email: 'ann@example.com' }, ts: new Date(), idempotencyKey: 'o-1',
    data: { order_id: 'o-1', amount: 42.5, items: [{ sku: 'A', qty: 1 }] },
  }, { trace: true });
  if (st.outcome === 'REJECTED') console.log(st.field, st.reason);
  const answer: DecideResponse = await hub.decide({ customer: { email: 'ann@example.com' }, placement: 'home_hero' });
  for (const a of answer.actions) console.log(a.kind, a.id, a.score.toFixed(2), a.reason);
  const c: Customer = await hub.getCustomer({ email: 'ann@example.com' }, { recent: 5 });
  const orders: number = c.hardFacts.orders;
  const seen: Date | null = c.hardFacts.lastSeen;
  const stream = hub.stream({ batchSize: 100, maxInFlight: 4 });
  await stream.write({ type: 'page_view', identities: [['cookie', 'ck-1']], ts: '2026-12-01T10:00:00Z' });
  const summary = await stream.end();
  console.log(created, orders, seen, summary.applied + summary.duplicates, toTimestamp(Date.now()).seconds);
  const watching = hub.watch({ kinds: ['interaction'], heartbeatSeconds: 10 });
  for await (const change of watching) {
    console.log(change.cursor, change.customerId);
    watching.cancel();
  }
  try {
    await hub.getCustomer('no-such-id');
  } catch (e) {
    if (e instanceof ShopkeeperError) console.log(e.code, e.fieldViolations.map((v) => v.field));
  }
  hub.close();
}

void main;
