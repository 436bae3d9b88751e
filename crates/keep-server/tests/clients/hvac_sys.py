"""hvac 2.4's sys/ calls against a running keep server: mount introspection, health, init,
capabilities, and response wrapping (a wrapped KV read unwrapped by an agent holding only the
wrapping token; sys.wrap / sys.unwrap). Exits non-zero (with the failing step) on a difference.

Usage: hvac_sys.py URL CA_FILE ADMIN_CERT ADMIN_KEY AGENT_CERT AGENT_KEY
"""
import sys

import hvac
from hvac import exceptions

url, ca, crt, key, agent_crt, agent_key = sys.argv[1:7]
c = hvac.Client(url=url, cert=(crt, key), verify=ca)


def step(name):
    print(f"step: {name}", flush=True)


step("sys.list_mounted_secrets_engines()")
r = c.sys.list_mounted_secrets_engines()
assert r["secret/"]["type"] == "kv", r
assert r["secret/"]["options"]["version"] == "2", r
assert r["data"]["secret/"] == r["secret/"], r
assert "cubbyhole/" not in r["data"], r

step("sys.read_mount_configuration('secret')")
r = c.sys.read_mount_configuration("secret")
assert r["data"]["default_lease_ttl"] == 2764800, r
assert r["data"]["options"]["version"] == "2", r

step("sys.list_auth_methods()")
r = c.sys.list_auth_methods()
assert r["data"]["cert/"]["type"] == "cert" and r["token/"]["type"] == "token", r

step("sys.read_health_status()")
r = c.sys.read_health_status(method="GET")
assert len(r["cluster_id"]) == 36 and r["cluster_name"].startswith("keep-cluster-"), r

step("sys.is_initialized()")
assert c.sys.is_initialized() is True

step("sys.get_capabilities() as the admin")
r = c.sys.get_capabilities(paths=["secret/data/x"])
assert r["capabilities"] == ["root"], r

step("a wrapped KV read: client.read(..., wrap_ttl='60s')")
c.secrets.kv.v2.create_or_update_secret(path="zero/agent-01", secret={"api_key": "sk-zero"})
r = c.read("secret/data/zero/agent-01", wrap_ttl="60s")
assert r["data"] is None and r["wrap_info"]["ttl"] == 60, r
assert "sk-zero" not in str(r), r
wrapping_token = r["wrap_info"]["token"]

step("sys.unwrap() by an agent holding only the wrapping token")
agent = hvac.Client(url=url, cert=(agent_crt, agent_key), verify=ca)
agent.token = wrapping_token
r = agent.sys.unwrap()
assert r["data"]["data"]["api_key"] == "sk-zero", r

step("a second unwrap fails as in Vault")
try:
    agent.sys.unwrap()
    raise AssertionError("second unwrap succeeded")
except exceptions.InvalidRequest as e:
    assert "wrapping token is not valid or does not exist" in str(e), e

step("sys.wrap() then sys.unwrap(token)")
r = c.sys.wrap(payload={"zero": "sk-wrapped"}, ttl=60)
assert r["wrap_info"]["creation_path"] == "sys/wrapping/wrap", r
r = c.sys.unwrap(r["wrap_info"]["token"])
assert r["data"]["zero"] == "sk-wrapped", r

step("mount changes are refused with keep's reason")
try:
    c.sys.enable_secrets_engine("kv", path="kv1")
    raise AssertionError("enable accepted")
except exceptions.InvalidRequest as e:
    assert "keep's mounts are fixed" in str(e), e

print("hvac: all sys calls behaved as Vault's")
