"""hvac 2.4 as an agent's operator and the agent call keep: a policy given as a dict (Vault's
JSON form), policy reads that clients read at the top level, and the agent's lists as hvac sends
them — kv.v2.list_secrets on a folder without its trailing slash, and Client.list (GET
?list=True) — under a list-only policy. Exits non-zero (with the failing step) on a difference.

Usage: hvac_shapes.py URL CA_FILE ADMIN_CERT ADMIN_KEY AGENT_CERT AGENT_KEY INTERMEDIATE_CA_FILE
"""
import json
import sys
import warnings

import hvac
from hvac import exceptions

warnings.simplefilter("ignore", DeprecationWarning)
url, ca, crt, key, agent_crt, agent_key, inter = sys.argv[1:8]
admin = hvac.Client(url=url, cert=(crt, key), verify=ca)


def step(name):
    print(f"step: {name}", flush=True)


step("sys.create_or_update_acl_policy with a dict (hvac sends it as JSON)")
policy = {
    "path": {
        "secret/data/agents/{{cert.common_name}}/*": {"capabilities": ["read"]},
        "secret/metadata/agents/{{cert.common_name}}/*": {"capabilities": ["list"]},
    }
}
admin.sys.create_or_update_acl_policy(name="agents-json", policy=policy)

step("sys.read_acl_policy: the fields at the top level and in data")
r = admin.sys.read_acl_policy("agents-json")
assert r["policy"] == r["data"]["policy"] and r["name"] == "agents-json", r
assert json.loads(r["policy"]) == policy, r

step("sys.read_policy (older API): rules at the top level")
r = admin.sys.read_policy("agents-json")
assert json.loads(r["rules"]) == policy and r["data"]["rules"] == r["rules"], r

step("sys.list_policies: policies at the top level")
r = admin.sys.list_policies()
assert "agents-json" in r["policies"] and r["policies"] == r["data"]["policies"], r

step("a dict policy with a typo is refused, naming it")
try:
    admin.sys.create_or_update_acl_policy(
        name="typo", policy={"path": {"secret/*": {"capabilities": ["reed"]}}}
    )
    raise AssertionError("a policy with capability 'reed' was accepted")
except exceptions.InvalidRequest as e:
    assert "unknown capability" in str(e) and "reed" in str(e), e
try:
    admin.sys.read_acl_policy("typo")
    raise AssertionError("the refused policy was stored")
except exceptions.InvalidPath:
    pass

step("the agent's role and secrets")
admin.auth.cert.create_ca_certificate_role(
    name="agents",
    certificate_file=inter,
    allowed_common_names="agent-*",
    token_policies=["agents-json"],
)
for p in ["agents/agent-01/llm", "agents/agent-01/search", "agents/agent-02/llm"]:
    admin.secrets.kv.v2.create_or_update_secret(path=p, secret={"api_key": "sk-" + p})

agent = hvac.Client(url=url, cert=(agent_crt, agent_key), verify=ca)
agent.auth.cert.login(name="agents")

step("kv.v2.list_secrets('agents/agent-01') as the list-only agent (no trailing slash)")
r = agent.secrets.kv.v2.list_secrets(path="agents/agent-01")
assert r["data"]["keys"] == ["llm", "search"], r

step("Client.list('secret/metadata/agents/agent-01') (GET ?list=True)")
r = agent.list("secret/metadata/agents/agent-01")
assert r is not None and r["data"]["keys"] == ["llm", "search"], r

step("the agent reads its own secret, and nothing of another agent's")
r = agent.secrets.kv.v2.read_secret_version(path="agents/agent-01/llm", raise_on_deleted_version=True)
assert r["data"]["data"]["api_key"] == "sk-agents/agent-01/llm", r
for call in [
    lambda: agent.secrets.kv.v2.list_secrets(path="agents/agent-02"),
    lambda: agent.list("secret/metadata/agents/agent-02"),
    lambda: agent.secrets.kv.v2.read_secret_version(path="agents/agent-02/llm", raise_on_deleted_version=True),
    # list-only: the metadata of a secret is a read, which the policy does not grant
    lambda: agent.secrets.kv.v2.read_secret_metadata(path="agents/agent-01/llm"),
]:
    try:
        call()
        raise AssertionError("the agent was allowed past its policy")
    except exceptions.Forbidden:
        pass

print("hvac: all shapes behaved as Vault's")
