'use strict';
// Starts a real `shopkeeper serve` for the tests: a throw-away store, the repository's rules, one
// API key and the Segment adapter on free loopback ports. SHOPKEEPER_BIN names the CLI (the
// pytest wrapper sets it); otherwise the repository's .venv or .venv-test, then PATH.
const { spawn } = require('child_process');
const crypto = require('crypto');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');

const REPO = path.resolve(__dirname, '..', '..', '..');

function shopkeeperBin() {
  if (process.env.SHOPKEEPER_BIN) return process.env.SHOPKEEPER_BIN;
  for (const venv of ['.venv', '.venv-test']) {
    const p = path.join(REPO, venv, 'bin', 'shopkeeper');
    if (fs.existsSync(p)) return p;
  }
  return 'shopkeeper';
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => { const { port } = srv.address(); srv.close(() => resolve(port)); });
  });
}

const sha256 = (s) => crypto.createHash('sha256').update(s).digest('hex');

/** Start a hub; resolves with {address, apiKey, segmentUrl, writeKey, stop()}. */
async function startHub({ extraConfig = '', tls = null } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sk-node-'));
  const apiKey = 'sk_node_test_' + crypto.randomBytes(8).toString('hex');
  const writeKey = 'wk_node_test_' + crypto.randomBytes(8).toString('hex');
  const segPort = await freePort();
  const config = [
    'listen: 127.0.0.1:0',
    `store: file://${path.join(dir, 'Data.fs')}`,
    'log_format: text',
    `rules_dir: ${path.join(REPO, 'rules')}`,
    'api_keys:',
    `  - {name: web, key_sha256: ${sha256(apiKey)}, scopes: [profiles:read, interactions:write, decide], channel: web}`,
    'adapters:',
    '  segment:',
    `    listen: 127.0.0.1:${segPort}`,
    `    write_keys: {${writeKey}: {touchpoint: web}}`,
    tls ? `tls: {cert: ${tls.cert}, key: ${tls.key}}` : '',
    extraConfig,
  ].join('\n');
  fs.writeFileSync(path.join(dir, 'hub.yaml'), config);
  const proc = spawn(shopkeeperBin(), ['serve', '--config', path.join(dir, 'hub.yaml'), '--grace', '1'],
    { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const address = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`hub did not start in 60 s:\n${output}`)), 60000);
    const onData = (chunk) => {
      output += chunk;
      const m = /shopkeeper hub listening on \S+:(\d+)/.exec(output);
      if (m) { clearTimeout(timer); resolve(`127.0.0.1:${m[1]}`); }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`hub exited with ${code}:\n${output}`)); });
  });
  return {
    address, apiKey, writeKey, segmentUrl: `http://127.0.0.1:${segPort}`, dir,
    stop: () => new Promise((resolve) => {
      if (proc.exitCode !== null) { resolve(); return; }
      proc.removeAllListeners('exit');
      proc.on('exit', () => { fs.rmSync(dir, { recursive: true, force: true }); resolve(); });
      proc.kill('SIGTERM');
    }),
  };
}

module.exports = { startHub, freePort, REPO };
