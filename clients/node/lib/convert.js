'use strict';
/**
 * Plain JavaScript values <-> the protobuf shapes @grpc/proto-loader wants.
 *
 * proto-loader sends a plain object given for a google.protobuf.Struct as an EMPTY struct and
 * a Date given for a Timestamp as 0, without a word. Everything that becomes a Struct or a
 * Timestamp therefore goes through here: a value that JSON cannot carry, or a time that is not
 * a time, is a TypeError naming the field — never an empty value.
 */

function describe(v) {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return `a ${v.constructor && v.constructor.name ? v.constructor.name : 'object'}`;
  return `${typeof v} ${String(v).slice(0, 40)}`;
}

function isPlainObject(v) {
  if (v === null || typeof v !== 'object') return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function toValue(v, path, seen) {
  if (v === null) return { nullValue: 'NULL_VALUE' };
  switch (typeof v) {
    case 'string': return { stringValue: v };
    case 'boolean': return { boolValue: v };
    case 'number':
      if (!Number.isFinite(v)) throw new TypeError(`${path}: ${v} is not a finite number (JSON has no NaN or Infinity)`);
      return { numberValue: v };
    case 'bigint':
      throw new TypeError(`${path}: a BigInt is not a JSON value; send Number(x) or String(x)`);
    case 'undefined':
      throw new TypeError(`${path}: undefined is not a JSON value (leave the field out, or send null)`);
    case 'object':
      break;
    default:
      throw new TypeError(`${path}: ${typeof v} is not a JSON value`);
  }
  if (v instanceof Date) return { stringValue: toDate(v, path).toISOString() };
  if (seen.has(v)) throw new TypeError(`${path}: refers back to itself (a cycle cannot be sent)`);
  seen.add(v);
  try {
    if (Array.isArray(v)) return { listValue: { values: v.map((x, i) => toValue(x, `${path}[${i}]`, seen)) } };
    if (!isPlainObject(v)) {
      throw new TypeError(`${path}: must be a plain object, an array or a JSON scalar, not ${describe(v)}`);
    }
    return { structValue: structOf(v, path, seen) };
  } finally {
    seen.delete(v);
  }
}

function structOf(obj, path, seen) {
  const fields = {};
  for (const [k, v] of Object.entries(obj)) fields[k] = toValue(v, `${path}.${k}`, seen);
  return { fields };
}

/** A google.protobuf.Struct from a plain object; `path` names it in errors ("data", "traits"). */
function toStruct(obj, path = 'value') {
  if (!isPlainObject(obj)) throw new TypeError(`${path}: must be a plain object such as {url: '/shoes'}, not ${describe(obj)}`);
  return structOf(obj, path, new Set([obj]));
}

/** A JavaScript value from a google.protobuf.Value as proto-loader decodes it. */
function fromValue(v) {
  if (v === null || v === undefined) return null;
  const kind = v.kind || Object.keys(v).find((k) => v[k] !== undefined && v[k] !== null && k !== 'kind');
  switch (kind) {
    case 'nullValue': return null;
    case 'numberValue': return v.numberValue;
    case 'stringValue': return v.stringValue;
    case 'boolValue': return v.boolValue;
    case 'structValue': return fromStruct(v.structValue);
    case 'listValue': return ((v.listValue && v.listValue.values) || []).map(fromValue);
    default: return null;
  }
}

/** A plain object from a google.protobuf.Struct as proto-loader decodes it. */
function fromStruct(s) {
  const out = {};
  if (!s || !s.fields) return out;
  for (const [k, v] of Object.entries(s.fields)) out[k] = fromValue(v);
  return out;
}

const ISO = /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/;

function toDate(v, path) {
  let d;
  if (v instanceof Date) d = v;
  else if (typeof v === 'string') {
    if (!ISO.test(v.trim())) throw new TypeError(`${path}: ${JSON.stringify(v)} is not an ISO 8601 time such as 2026-12-01T10:00:00Z`);
    d = new Date(v.trim());
  } else if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new TypeError(`${path}: ${v} is not a time`);
    d = new Date(v); // milliseconds since 1970, like Date.now()
  } else {
    throw new TypeError(`${path}: must be a Date, an ISO 8601 string or milliseconds since 1970, not ${describe(v)}`);
  }
  if (Number.isNaN(d.getTime())) throw new TypeError(`${path}: invalid date`);
  return d;
}

/** A google.protobuf.Timestamp from a Date, ISO 8601 text or epoch milliseconds. */
function toTimestamp(v, path = 'ts') {
  const ms = toDate(v, path).getTime();
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: (ms - seconds * 1000) * 1e6 };
}

function fromTimestamp(t) {
  if (!t) return null;
  return new Date(Number(t.seconds) * 1000 + Math.round(Number(t.nanos || 0) / 1e6));
}

/**
 * Walk a decoded message by its protobufjs type: Timestamps become Dates, Structs plain objects,
 * Values JavaScript values; nested messages, repeated fields and maps are walked the same way.
 */
function decode(type, obj) {
  if (obj === null || obj === undefined) return null;
  const name = type.fullName;
  if (name === '.google.protobuf.Timestamp') return fromTimestamp(obj);
  if (name === '.google.protobuf.Struct') return fromStruct(obj);
  if (name === '.google.protobuf.Value') return fromValue(obj);
  const out = {};
  for (const field of type.fieldsArray) {
    const v = obj[field.name];
    const sub = field.resolvedType && field.resolvedType.fieldsArray ? field.resolvedType : null;
    if (!sub || v === undefined || v === null) { out[field.name] = v === undefined ? null : v; continue; }
    if (field.map) {
      out[field.name] = Object.fromEntries(Object.entries(v).map(([k, x]) => [k, decode(sub, x)]));
    } else if (field.repeated) {
      out[field.name] = v.map((x) => decode(sub, x));
    } else {
      out[field.name] = decode(sub, v);
    }
  }
  return out;
}

module.exports = { toStruct, fromStruct, toValue: (v, path = 'value') => toValue(v, path, new Set()), fromValue,
  toTimestamp, fromTimestamp, toDate, decode, isPlainObject, describe };
