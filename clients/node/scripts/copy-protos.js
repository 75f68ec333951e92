'use strict';
// `npm pack` / `npm publish`: copy the hub's .proto files into the package (proto/shopkeeper/v1),
// so an installed @shopkeeper/client carries its own API definition.
const fs = require('fs');
const path = require('path');

const from = path.join(__dirname, '..', '..', '..', 'protos', 'shopkeeper', 'v1');
const to = path.join(__dirname, '..', 'proto', 'shopkeeper', 'v1');
fs.rmSync(path.join(__dirname, '..', 'proto'), { recursive: true, force: true });
fs.mkdirSync(to, { recursive: true });
for (const f of fs.readdirSync(from).filter((n) => n.endsWith('.proto'))) {
  fs.copyFileSync(path.join(from, f), path.join(to, f));
}
