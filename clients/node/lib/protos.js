'use strict';
/**
 * The hub's API definition: the .proto files shipped in the package (copied at `npm pack`), or
 * the repository's protos/ when running from a source checkout.
 */
const fs = require('fs');
const path = require('path');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const FILES = ['shopkeeper/v1/common.proto', 'shopkeeper/v1/customers.proto',
  'shopkeeper/v1/interactions.proto', 'shopkeeper/v1/watch.proto', 'shopkeeper/v1/admin.proto'];

function protoRoot() {
  for (const dir of [path.join(__dirname, '..', 'proto'), path.join(__dirname, '..', '..', '..', 'protos')]) {
    if (fs.existsSync(path.join(dir, FILES[0]))) return dir;
  }
  throw new Error('@shopkeeper/client: the .proto files are missing (reinstall the package)');
}

const LOADER_OPTIONS = { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true };

let cached = null;

/** { packageDefinition, grpcObject, root } loaded once. */
function load() {
  if (cached) return cached;
  const grpc = require('@grpc/grpc-js');
  const dir = protoRoot();
  const packageDefinition = protoLoader.loadSync(FILES, { ...LOADER_OPTIONS, includeDirs: [dir] });
  const grpcObject = grpc.loadPackageDefinition(packageDefinition);
  const root = new protobuf.Root();
  root.resolvePath = (origin, target) => {
    const inRepo = path.join(dir, target);
    if (fs.existsSync(inRepo)) return inRepo;
    return protobuf.util.path.resolve(origin, target); // google/protobuf/*.proto: protobufjs has them built in
  };
  root.loadSync(FILES.map((f) => path.join(dir, f)), { keepCase: false });
  root.resolveAll();
  cached = { packageDefinition, grpcObject, root, dir };
  return cached;
}

module.exports = { load, protoRoot, FILES, LOADER_OPTIONS };
