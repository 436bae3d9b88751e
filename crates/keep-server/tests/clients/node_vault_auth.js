// node-vault 0.12 against keep: cert login (empty form-encoded body), login with a role name
// through write() (certLogin({name}) is broken in 0.12.0), a KV v2 read, token lookup-self.
// Usage: node node_vault_auth.js URL CA AGENT_CERT AGENT_KEY   (NODE_PATH must find node-vault)
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

  step('certLogin({})');
  const r1 = await vault.certLogin({});
  assert.ok(vault.token && vault.token.startsWith('hvs.'), 'token set by certLogin');
  assert.deepStrictEqual(r1.auth.policies, ['agents', 'default']);

  step("write('auth/cert/login', {name})");
  const r2 = await vault.write('auth/cert/login', { name: 'agents' });
  assert.strictEqual(r2.auth.metadata.cert_name, 'agents');
  vault.token = r2.auth.client_token;

  step("read('secret/data/…')");
  const s = await vault.read('secret/data/agents/agent-01/llm');
  assert.strictEqual(s.data.data.api_key, 'sk-node');

  step('read of another agent is refused');
  await assert.rejects(vault.read('secret/data/agents/agent-02/llm'), (e) => e.response.statusCode === 403);

  step('tokenLookupSelf()');
  const me = await vault.tokenLookupSelf();
  assert.deepStrictEqual(me.data.policies, ['agents', 'default']);
  console.log('node-vault: all calls behaved as Vault\'s');
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
