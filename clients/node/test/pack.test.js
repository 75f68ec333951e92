'use strict';
// `npm pack` makes a package that works on its own: the .proto files are inside it.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

test('npm pack: the tarball carries the protos and loads them from inside itself', () => {
  const pkgDir = path.resolve(__dirname, '..');
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'sk-pack-'));
  try {
    const json = execFileSync('npm', ['pack', '--json', '--pack-destination', out], { cwd: pkgDir, encoding: 'utf8' });
    const [info] = JSON.parse(json.slice(json.indexOf('[')));
    const files = info.files.map((f) => f.path);
    for (const f of ['index.js', 'index.d.ts', 'lib/client.js', 'proto/shopkeeper/v1/common.proto',
      'proto/shopkeeper/v1/interactions.proto']) assert.ok(files.includes(f), `${f} missing from ${files}`);
    assert.ok(!files.some((f) => f.startsWith('test/') || f.startsWith('node_modules/')));
    execFileSync('tar', ['xzf', path.join(out, info.filename), '-C', out]);
    const unpacked = path.join(out, 'package');
    fs.symlinkSync(path.join(pkgDir, 'node_modules'), path.join(unpacked, 'node_modules'));
    // the unpacked package resolves its protos from its own proto/ directory, not the repository's
    const script = `const p = require('./lib/protos'); const { Client, makeEvent } = require('.');
      const c = new Client('127.0.0.1:1'); c.close();
      makeEvent({type: 'page_view', identities: {email: 'a@example.org'}, data: {url: '/'}});
      console.log(p.protoRoot());`;
    const root = execFileSync(process.execPath, ['-e', script], { cwd: unpacked, encoding: 'utf8' }).trim();
    assert.equal(fs.realpathSync(root), fs.realpathSync(path.join(unpacked, 'proto')));
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
    fs.rmSync(path.join(pkgDir, 'proto'), { recursive: true, force: true });
  }
});
