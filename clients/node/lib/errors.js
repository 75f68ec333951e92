'use strict';
/**
 * ShopkeeperError: a failed call with its gRPC code as text and, from the google.rpc.Status the
 * hub puts in the trailers, the BadRequest field violations (which field, why).
 */
const protobuf = require('protobufjs');

const rpc = protobuf.Root.fromJSON({
  nested: {
    google: {
      nested: {
        rpc: {
          nested: {
            Status: { fields: { code: { type: 'int32', id: 1 }, message: { type: 'string', id: 2 },
              details: { rule: 'repeated', type: 'Any', id: 3 } } },
            Any: { fields: { typeUrl: { type: 'string', id: 1 }, value: { type: 'bytes', id: 2 } } },
            BadRequest: { fields: { fieldViolations: { rule: 'repeated', type: 'FieldViolation', id: 1 } },
              nested: { FieldViolation: { fields: { field: { type: 'string', id: 1 },
                description: { type: 'string', id: 2 } } } } },
          },
        },
      },
    },
  },
});
const Status = rpc.lookupType('google.rpc.Status');
const BadRequest = rpc.lookupType('google.rpc.BadRequest');

const CODES = ['OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS',
  'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED',
  'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED'];

class ShopkeeperError extends Error {
  constructor(message, { code = 'UNKNOWN', details = '', fieldViolations = [], cause } = {}) {
    super(message, cause ? { cause } : undefined);
    this.name = 'ShopkeeperError';
    /** the gRPC status code's name: 'INVALID_ARGUMENT', 'NOT_FOUND', 'UNAUTHENTICATED'… */
    this.code = code;
    this.details = details;
    /** [{field, description}] from google.rpc.BadRequest: which field of the request, and why */
    this.fieldViolations = fieldViolations;
  }
}

function violationsOf(metadata) {
  const raw = metadata && typeof metadata.get === 'function' ? metadata.get('grpc-status-details-bin') : [];
  const out = [];
  for (const buf of raw || []) {
    let st;
    try { st = Status.decode(Buffer.isBuffer(buf) ? buf : Buffer.from(buf)); } catch { continue; }
    for (const d of st.details || []) {
      if (!String(d.typeUrl).endsWith('/google.rpc.BadRequest')) continue;
      for (const v of BadRequest.decode(d.value).fieldViolations || []) out.push({ field: v.field, description: v.description });
    }
  }
  return out;
}

/** A ShopkeeperError from a grpc-js ServiceError (or the error itself if it is not one). */
function fromGrpc(err) {
  if (!err || typeof err.code !== 'number') return err;
  const code = CODES[err.code] || String(err.code);
  const details = err.details || '';
  return new ShopkeeperError(`${code}: ${details}`, { code, details, fieldViolations: violationsOf(err.metadata), cause: err });
}

module.exports = { ShopkeeperError, fromGrpc, CODES };
