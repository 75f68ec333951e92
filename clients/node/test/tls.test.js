'use strict';
// TLS: the client verifies the hub's certificate against the CA it is given (openssl makes them).
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { Client, ShopkeeperError } = require('..');
const { startHub } = require('./hub');

function makeCerts(dir) {
  const run = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  run('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=test-ca');
  run('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost');
  fs.writeFileSync(path.join(dir, 'ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  run('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem',
    '-days', '2', '-extfile', 'ext.cnf');
  return { ca: path.join(dir, 'ca.pem'), cert: path.join(dir, 'server.pem'), key: path.join(dir, 'server.key') };
}

test('tls: a CA file path or PEM text verifies the hub; a plaintext client is refused', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sk-tls-'));
  const certs = makeCerts(dir);
  const hub = await startHub({ tls: certs });
  try {
    for (const ca of [certs.ca, fs.readFileSync(certs.ca, 'utf8')]) {
      const sk = new Client(hub.address, { apiKey: hub.apiKey, tls: { ca } });
      const st = await sk.record({ type: 'page_view', identities: { cookie: 'tls-visitor-1' }, data: { url: '/' } });
      sk.close();
      assert.equal(st.outcome, 'APPLIED');
    }
    const plain = new Client(hub.address, { apiKey: hub.apiKey, deadlineMs: 3000 });
    const err = await plain.getCustomer({ cookie: 'tls-visitor-1' }).catch((e) => e);
    plain.close();
    assert.ok(err instanceof ShopkeeperError);
    assert.ok(['UNAVAILABLE', 'DEADLINE_EXCEEDED'].includes(err.code), err.code);
  } finally {
    await hub.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
