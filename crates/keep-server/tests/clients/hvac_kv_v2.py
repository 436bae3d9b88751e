"""Every KV v2 call hvac 2.4 makes, against a running keep server, with the admin client cert
and no token. Exits non-zero (with the failing step) if anything differs from what Vault returns.

Usage: hvac_kv_v2.py URL CA_FILE CERT_FILE KEY_FILE
"""
import sys
import warnings

import hvac
from hvac import exceptions

# hvac.patch() itself calls read_secret_version without raise_on_deleted_version.
warnings.simplefilter("ignore", DeprecationWarning)

url, ca, crt, key = sys.argv[1:5]
c = hvac.Client(url=url, cert=(crt, key), verify=ca)
kv = c.secrets.kv.v2
P = "openclaw/llm"


def step(name):
    print(f"step: {name}", flush=True)


step("write v1")
r = kv.create_or_update_secret(path=P, secret={"api_key": "sk-one"})
assert r["data"]["version"] == 1, r
assert r["data"]["deletion_time"] == "" and r["data"]["destroyed"] is False, r

step("write v2 with cas=1")
r = kv.create_or_update_secret(path=P, secret={"api_key": "sk-two"}, cas=1)
assert r["data"]["version"] == 2, r

step("stale cas is refused")
try:
    kv.create_or_update_secret(path=P, secret={"api_key": "nope"}, cas=1)
    raise AssertionError("stale cas accepted")
except exceptions.InvalidRequest as e:
    assert "check-and-set" in str(e), e

step("cas=0 on an existing secret is refused")
try:
    kv.create_or_update_secret(path=P, secret={"api_key": "nope"}, cas=0)
    raise AssertionError("cas=0 accepted on existing secret")
except exceptions.InvalidRequest:
    pass

step("read latest and a version")
r = kv.read_secret_version(path=P, raise_on_deleted_version=True)
assert r["data"]["data"] == {"api_key": "sk-two"}, r
assert r["data"]["metadata"]["version"] == 2, r
r = kv.read_secret_version(path=P, version=1, raise_on_deleted_version=True)
assert r["data"]["data"] == {"api_key": "sk-one"}, r

step("patch (hvac reads, merges, writes with cas)")
r = kv.patch(path=P, secret={"model": "gpt-5"})
assert r["data"]["version"] == 3, r
r = kv.read_secret_version(path=P, raise_on_deleted_version=True)
assert r["data"]["data"] == {"api_key": "sk-two", "model": "gpt-5"}, r

step("list")
kv.create_or_update_secret(path="openclaw/tools/search", secret={"token": "t"})
r = kv.list_secrets(path="openclaw")
assert r["data"]["keys"] == ["llm", "tools/"], r

step("metadata read and update")
r = kv.read_secret_metadata(path=P)
assert r["data"]["current_version"] == 3 and r["data"]["oldest_version"] == 1, r
assert set(r["data"]["versions"]) == {"1", "2", "3"}, r
kv.update_metadata(path=P, max_versions=5, cas_required=False, custom_metadata={"owner": "ops"})
r = kv.read_secret_metadata(path=P)
assert r["data"]["max_versions"] == 5 and r["data"]["custom_metadata"] == {"owner": "ops"}, r

step("delete latest; deleted reads both ways")
kv.delete_latest_version_of_secret(path=P)
try:
    kv.read_secret_version(path=P, raise_on_deleted_version=True)
    raise AssertionError("deleted version readable")
except exceptions.InvalidPath:
    pass
r = kv.read_secret_version(path=P, raise_on_deleted_version=False)
assert r["data"]["data"] is None, r
assert r["data"]["metadata"]["deletion_time"] != "", r
assert r["data"]["metadata"]["version"] == 3, r

step("undelete")
kv.undelete_secret_versions(path=P, versions=[3])
r = kv.read_secret_version(path=P, raise_on_deleted_version=True)
assert r["data"]["data"]["model"] == "gpt-5", r

step("destroy")
kv.destroy_secret_versions(path=P, versions=[1])
# Like Vault: a destroyed (never soft-deleted) version has deletion_time "", so hvac raises
# even with raise_on_deleted_version=False; the metadata shows it destroyed.
try:
    kv.read_secret_version(path=P, version=1, raise_on_deleted_version=False)
    raise AssertionError("destroyed version readable")
except exceptions.InvalidPath as e:
    assert '"destroyed":true' in str(e), e
r = kv.read_secret_metadata(path=P)
assert r["data"]["versions"]["1"]["destroyed"] is True, r

step("missing path")
try:
    kv.read_secret_version(path="openclaw/none", raise_on_deleted_version=True)
    raise AssertionError("missing path readable")
except exceptions.InvalidPath:
    pass

step("delete metadata and all versions")
kv.delete_metadata_and_all_versions(path=P)
try:
    kv.read_secret_metadata(path=P)
    raise AssertionError("metadata survived")
except exceptions.InvalidPath:
    pass
r = kv.list_secrets(path="openclaw")
assert r["data"]["keys"] == ["tools/"], r

step("health")
h = c.sys.read_health_status(method="GET")
assert h["initialized"] is True and h["sealed"] is False, h

print("hvac: all KV v2 calls behaved as Vault's", flush=True)
