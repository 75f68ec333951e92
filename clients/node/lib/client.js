'use strict';
/**
 * The Shopkeeper hub from Node.js: plain objects in, plain objects out.
 *
 * Requests are built here field by field (data and traits through toStruct, times through
 * toTimestamp), so a mistake is a TypeError naming the field before anything is sent; answers
 * are walked by their protobuf type (Timestamps -> Date, Structs -> objects, int64 -> number).
 */
const crypto = require('crypto');
const fs = require('fs');
const grpc = require('@grpc/grpc-js');
const { load } = require('./protos');
const { toStruct, toTimestamp, decode, isPlainObject, describe } = require('./convert');
const { ShopkeeperError, fromGrpc } = require('./errors');

const EVENT_KEYS = new Set(['type', 'channel', 'ts', 'identities', 'idempotencyKey', 'data', 'touchpoint', 'traits']);

function identitiesOf(ids, path = 'identities') {
  if (ids === undefined || ids === null) throw new TypeError(`${path}: required, e.g. {email: 'ann@example.com'}`);
  const pairs = [];
  if (Array.isArray(ids)) {
    ids.forEach((x, i) => {
      if (Array.isArray(x) && x.length === 2) pairs.push([x[0], x[1], `${path}[${i}]`]);
      else if (isPlainObject(x) && 'namespace' in x) pairs.push([x.namespace, x.value, `${path}[${i}]`]);
      else throw new TypeError(`${path}[${i}]: must be {namespace, value} or [namespace, value]`);
    });
  } else if (isPlainObject(ids)) {
    for (const [ns, v] of Object.entries(ids)) {
      for (const one of Array.isArray(v) ? v : [v]) pairs.push([ns, one, `${path}.${ns}`]);
    }
  } else {
    throw new TypeError(`${path}: must be an object such as {email: 'ann@example.com'} or a list, not ${describe(ids)}`);
  }
  return pairs.map(([namespace, value, where]) => {
    if (typeof namespace !== 'string' || !namespace) throw new TypeError(`${where}: the namespace must be text`);
    if (typeof value !== 'string' && !(typeof value === 'number' && Number.isFinite(value))) {
      throw new TypeError(`${where}: must be text, not ${describe(value)}`);
    }
    return { namespace, value: String(value) };
  });
}

function customerRef(ref, path = 'customer') {
  if (typeof ref === 'string' && ref) return { id: ref };
  if (isPlainObject(ref)) {
    if (typeof ref.id === 'string' && Object.keys(ref).length === 1) return { id: ref.id };
    if ('namespace' in ref) return { identity: identitiesOf([ref], path)[0] };
    const keys = Object.keys(ref);
    if (keys.length === 1) return { identity: identitiesOf(ref, path)[0] };
  }
  throw new TypeError(`${path}: a customer id, or one identity such as {email: 'ann@example.com'}; got ${describe(ref)}`);
}

/** The Event message for a plain event object; throws TypeError naming the field. */
function makeEvent(ev, path = 'event') {
  if (!isPlainObject(ev)) throw new TypeError(`${path}: must be a plain object, not ${describe(ev)}`);
  const unknown = Object.keys(ev).filter((k) => !EVENT_KEYS.has(k));
  if (unknown.length) {
    throw new TypeError(`${path}.${unknown[0]}: unknown field; an event has ${[...EVENT_KEYS].join(', ')}`);
  }
  if (typeof ev.type !== 'string' || !ev.type) throw new TypeError(`${path}.type: required, e.g. 'page_view' or 'order'`);
  for (const k of ['channel', 'touchpoint', 'idempotencyKey']) {
    if (ev[k] !== undefined && ev[k] !== null && typeof ev[k] !== 'string') throw new TypeError(`${path}.${k}: must be text`);
  }
  const out = {
    type: ev.type,
    channel: ev.channel || '',
    identities: identitiesOf(ev.identities, `${path}.identities`),
    idempotencyKey: ev.idempotencyKey || crypto.randomUUID(),
    touchpoint: ev.touchpoint || '',
  };
  if (ev.ts !== undefined && ev.ts !== null) out.ts = toTimestamp(ev.ts, `${path}.ts`);
  if (ev.data !== undefined && ev.data !== null) out.data = toStruct(ev.data, `${path}.data`);
  if (ev.traits !== undefined && ev.traits !== null) out.traits = toStruct(ev.traits, `${path}.traits`);
  return out;
}

function readMaybeFile(v) {
  if (v === undefined || v === null) return null;
  if (Buffer.isBuffer(v)) return v;
  if (typeof v === 'string' && v.includes('-----BEGIN')) return Buffer.from(v);
  return fs.readFileSync(v);
}

class Client {
  /**
   * @param {string} address host:port of the hub
   * @param {object} [options] apiKey, tls (true for the system roots, or {ca, cert, key} as PEM
   *   text, Buffers or file paths), deadlineMs per unary call (default 30000), channelOptions
   */
  constructor(address = '127.0.0.1:50051', options = {}) {
    const { grpcObject, root } = load();
    this.root = root;
    this.apiKey = options.apiKey || null;
    this.deadlineMs = options.deadlineMs || 30000;
    let creds;
    if (options.tls) {
      const t = options.tls === true ? {} : options.tls;
      creds = grpc.credentials.createSsl(readMaybeFile(t.ca), readMaybeFile(t.key), readMaybeFile(t.cert));
    } else {
      creds = grpc.credentials.createInsecure();
    }
    const v1 = grpcObject.shopkeeper.v1;
    const opts = options.channelOptions || {};
    this.customers = new v1.Customers(address, creds, opts);
    this.interactions = new v1.Interactions(address, creds, { ...opts, channelOverride: this.customers.getChannel() });
    this.watcher = new v1.Watch(address, creds, { ...opts, channelOverride: this.customers.getChannel() });
  }

  metadata() {
    const md = new grpc.Metadata();
    if (this.apiKey) md.set('x-api-key', this.apiKey);
    return md;
  }

  type(name) {
    return this.root.lookupType(`shopkeeper.v1.${name}`);
  }

  unary(stub, method, request, answerType) {
    return new Promise((resolve, reject) => {
      stub[method](request, this.metadata(), { deadline: Date.now() + this.deadlineMs }, (err, res) => {
        if (err) reject(fromGrpc(err));
        else resolve(decode(this.type(answerType), res));
      });
    });
  }

  /** Record one event; resolves with its EventStatus after the commit (outcome APPLIED or DUPLICATE). */
  async record(event, { trace = false } = {}) {
    const request = { event: makeEvent(event), trace };
    return this.unary(this.interactions, 'RecordInteraction', request, 'EventStatus');
  }

  /** Attach identities and traits: {identities, traits, source, createOnly}. */
  async identify({ identities, traits, source = '', createOnly = false } = {}) {
    const request = { identities: identitiesOf(identities), source, createOnly };
    if (traits !== undefined && traits !== null) request.traits = toStruct(traits, 'traits');
    return this.unary(this.customers, 'Identify', request, 'IdentifyResponse');
  }

  /** Ranked actions for a customer: {customer, placement, context, limit, touchpoint}. */
  async decide({ customer, placement = '', context, limit = 0, touchpoint = '' } = {}) {
    const request = { customer: customerRef(customer), placement, limit, touchpoint };
    if (context !== undefined && context !== null) request.context = toStruct(context, 'context');
    return this.unary(this.interactions, 'Decide', request, 'DecideResponse');
  }

  /** The 360° view: getCustomer('id') or getCustomer({email: '…'}, {recent: 20}). */
  async getCustomer(customer, { recent = 0 } = {}) {
    return this.unary(this.customers, 'GetCustomer', { customer: customerRef(customer), recent }, 'Customer');
  }

  /**
   * Events in batches on one long-lived stream, with back-pressure: see EventStream.
   * @param {object} [options] batchSize (default 500), maxInFlight unacknowledged batches (8), lingerMs (5)
   */
  stream(options = {}) {
    return new EventStream(this, options);
  }

  /**
   * Committed changes, then live: `for await (const change of hub.watch({kinds: ['interaction']}))`.
   * Options: afterCursor, fromOldest, kinds, eventTypes, segments, customerIds, heartbeatSeconds.
   * Call `.cancel()` on the returned object to stop; the loop then ends without an error.
   */
  watch(options = {}) {
    const request = {
      afterCursor: options.afterCursor || 0, fromOldest: !!options.fromOldest, kinds: options.kinds || [],
      eventTypes: options.eventTypes || [], segments: options.segments || [], customerIds: options.customerIds || [],
      heartbeatSeconds: options.heartbeatSeconds || 0,
    };
    const call = this.watcher.Watch(request, this.metadata());
    const type = this.type('Change');
    let cancelled = false;
    return {
      call,
      cancel() { cancelled = true; call.cancel(); },
      async* [Symbol.asyncIterator]() {
        try {
          for await (const change of call) yield decode(type, change);
        } catch (err) {
          if (cancelled && err.code === grpc.status.CANCELLED) return;
          throw fromGrpc(err);
        }
      },
    };
  }

  close() {
    this.customers.close();
  }
}

/**
 * Batches events onto one StreamInteractions call. `await stream.write(event)` waits while
 * `maxInFlight` batches are unacknowledged (back-pressure) and returns at once otherwise;
 * `stream.send(event)` resolves with that event's EventStatus once its batch is committed;
 * `await stream.end()` flushes, waits for every acknowledgement and resolves with
 * {applied, duplicates, rejected, rejections: [{index, field, reason}]} (index counts from 0
 * over the whole stream).
 */
class EventStream {
  constructor(client, { batchSize = 500, maxInFlight = 8, lingerMs = 5 } = {}) {
    if (!(batchSize > 0 && batchSize <= 1000)) throw new TypeError('batchSize: 1 to 1000 events per batch');
    this.client = client;
    this.batchSize = batchSize;
    this.maxInFlight = Math.max(1, maxInFlight);
    this.lingerMs = lingerMs;
    this.statusType = client.type('EventStatus');
    this.buffer = [];
    this.waiters = new Map(); // batchId -> [{resolve, reject}] per event
    this.inFlight = 0;
    this.maxSeenInFlight = 0;
    this.roomWaiters = [];
    this.count = 0;
    this.batches = 0;
    this.summary = { applied: 0, duplicates: 0, rejected: 0, rejections: [] };
    this.failed = null;
    this.timer = null;
    this.call = client.interactions.StreamInteractions(client.metadata());
    this.call.on('data', (ack) => this.onAck(ack));
    this.call.on('error', (err) => this.fail(fromGrpc(err)));
    this.done = new Promise((resolve) => this.call.on('status', resolve));
  }

  /** Queue one event (a TypeError names a bad field at once); waits while the stream is full. */
  async write(event) {
    if (this.failed) throw this.failed;
    const message = makeEvent(event, `event ${this.count}`);
    const entry = { message, index: this.count++, resolve: null, reject: null, promise: null };
    entry.promise = new Promise((res, rej) => { entry.resolve = res; entry.reject = rej; });
    entry.promise.catch(() => {}); // surfaced through send() / end(), not as an unhandled rejection
    this.buffer.push(entry);
    if (this.buffer.length >= this.batchSize) await this.flush();
    else if (!this.timer) this.timer = setTimeout(() => { this.timer = null; this.flush().catch(() => {}); }, this.lingerMs);
    return entry;
  }

  /** Queue one event and resolve with its EventStatus after the commit. */
  async send(event) {
    const entry = await this.write(event);
    return entry.promise;
  }

  async flush() {
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    while (this.inFlight >= this.maxInFlight && !this.failed) {
      await new Promise((resolve) => this.roomWaiters.push(resolve));
    }
    if (this.failed) throw this.failed;
    if (!this.buffer.length) return;
    const batch = this.buffer.splice(0, this.batchSize);
    const batchId = String(++this.batches);
    this.waiters.set(batchId, batch);
    this.inFlight += 1;
    this.maxSeenInFlight = Math.max(this.maxSeenInFlight, this.inFlight);
    const ok = this.call.write({ batchId, events: batch.map((e) => e.message) });
    if (!ok) await new Promise((resolve) => this.call.once('drain', resolve));
    if (this.buffer.length >= this.batchSize) await this.flush();
  }

  onAck(ack) {
    const batch = this.waiters.get(ack.batchId);
    if (!batch) return;
    this.waiters.delete(ack.batchId);
    this.inFlight -= 1;
    this.summary.applied += ack.applied;
    this.summary.duplicates += ack.duplicates;
    this.summary.rejected += ack.rejected;
    for (const raw of ack.statuses) {
      const st = decode(this.statusType, raw);
      const entry = batch[st.index];
      if (!entry) continue;
      st.index = entry.index;
      if (st.outcome === 'REJECTED') this.summary.rejections.push({ index: entry.index, field: st.field, reason: st.reason });
      entry.resolve(st);
    }
    const waiting = this.roomWaiters.splice(0);
    waiting.forEach((w) => w());
  }

  fail(err) {
    if (this.failed) return;
    this.failed = err instanceof ShopkeeperError ? err : new ShopkeeperError(String(err), { cause: err });
    for (const batch of this.waiters.values()) batch.forEach((e) => e.reject(this.failed));
    this.waiters.clear();
    this.buffer.forEach((e) => e.reject(this.failed));
    this.buffer = [];
    const waiting = this.roomWaiters.splice(0);
    waiting.forEach((w) => w());
  }

  /** Flush, wait for every acknowledgement, close the stream; resolves with the summary. */
  async end() {
    await this.flush();
    while (this.inFlight > 0 && !this.failed) await new Promise((resolve) => this.roomWaiters.push(resolve));
    if (this.failed) throw this.failed;
    this.call.end();
    await this.done;
    if (this.failed) throw this.failed;
    return this.summary;
  }
}

module.exports = { Client, EventStream, makeEvent, customerRef, identitiesOf };
