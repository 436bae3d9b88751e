"""hvac 2.4 against keep's cert auth, tokens and policies.

Usage: hvac_auth.py URL CA ADMIN_CERT ADMIN_KEY AGENT_CERT AGENT_KEY INTERMEDIATE_CA_FILE
The admin (a break-glass identity in the server config) sets up a policy and a role; the agent
logs in with its certificate and works with its token.
"""
import sys
import warnings

import hvac
from hvac import exceptions

warnings.simplefilter("ignore", DeprecationWarning)
url, ca, admin_crt, admin_key, agent_crt, agent_key, inter = sys.argv[1:8]


def step(name):
    print(f"step: {name}", flush=True)


admin = hvac.Client(url=url, cert=(admin_crt, admin_key), verify=ca)

step("policy create and list")
admin.sys.create_or_update_acl_policy(
    name="agents",
    policy='path "secret/data/agents/{{cert.common_name}}/*" { capabilities = ["read", "create", "update"] }',
)
r = admin.sys.list_acl_policies()
assert "agents" in r["data"]["keys"] and "default" in r["data"]["keys"], r
r = admin.sys.read_acl_policy(name="agents")
assert "{{cert.common_name}}" in r["data"]["policy"], r

step("role create as hvac sends it")
admin.auth.cert.create_ca_certificate_role(
    name="agents",
    certificate_file=inter,
    allowed_common_names="agent-*",
    token_policies=["agents"],
    token_ttl="1h",
)
r = admin.auth.cert.read_ca_certificate_role(name="agents")
assert r["data"]["allowed_common_names"] == ["agent-*"], r
r = admin.auth.cert.list_certificate_roles()
assert r["data"]["keys"] == ["agents"], r
admin.secrets.kv.v2.create_or_update_secret(path="agents/agent-01/llm", secret={"api_key": "sk-agent"})
admin.secrets.kv.v2.create_or_update_secret(path="agents/agent-02/llm", secret={"api_key": "sk-other"})

agent = hvac.Client(url=url, cert=(agent_crt, agent_key), verify=ca)
assert agent.is_authenticated() is False

step("login without a name")
r = agent.auth.cert.login()
assert r["auth"]["policies"] == ["agents", "default"], r
assert agent.is_authenticated() is True

step("login with a name")
r = agent.auth.cert.login(name="agents")
assert r["auth"]["metadata"]["cert_name"] == "agents", r

step("KV read with the token")
r = agent.secrets.kv.v2.read_secret_version(path="agents/agent-01/llm", raise_on_deleted_version=True)
assert r["data"]["data"]["api_key"] == "sk-agent", r
try:
    agent.secrets.kv.v2.read_secret_version(path="agents/agent-02/llm", raise_on_deleted_version=True)
    raise AssertionError("read another agent's secret")
except exceptions.Forbidden:
    pass

step("token self-management")
r = agent.auth.token.lookup_self()
assert r["data"]["policies"] == ["agents", "default"], r
r = agent.auth.token.renew_self()
assert r["auth"]["lease_duration"] > 0, r
agent.auth.token.revoke_self()
assert agent.is_authenticated() is False

step("failed login says why")
try:
    admin.auth.cert.login(name="agents")
    raise AssertionError("operator logged in as an agent")
except exceptions.InvalidRequest as e:
    assert "allowed_common_names" in str(e), e

print("hvac: cert auth, tokens and policies behaved as Vault's", flush=True)
