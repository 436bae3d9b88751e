// node-vault 0.12's sys/ calls against keep: mounts(), health(), initialized().
// Usage: node node_vault_sys.js URL CA CERT KEY   (NODE_PATH must find node-vault)
'use strict';
const fs = require('fs');
const assert = require('assert');

async function main() {
  const [url, ca, crt, key] = process.argv.slice(2);
  const vault = require('node-vault')({
    endpoint: url,
    requestOptions: { ca: fs.readFileSync(ca), cert: fs.readFileSync(crt), key: fs.readFileSync(key) },
  });
  const step = (s) => console.log(`step: ${s}`);

  step('mounts()');
  const m = await vault.mounts();
  assert.strictEqual(m['secret/'].type, 'kv');
  assert.strictEqual(m.data['secret/'].options.version, '2');

  step('health()');
  const h = await vault.health();
  assert.strictEqual(h.initialized, true);
  assert.strictEqual(h.sealed, false);
  assert.strictEqual(h.cluster_id.length, 36);

  step('initialized()');
  const i = await vault.initialized();
  assert.deepStrictEqual(i, { initialized: true });
  console.log("node-vault: all sys calls behaved as Vault's");
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
