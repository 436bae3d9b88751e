"""hvac 2.4 against keep's PKI mount (pki/).

Usage: hvac_pki.py URL CA ADMIN_CERT ADMIN_KEY CSR_FILE
The admin (a break-glass identity) makes a role, issues and signs certificates, reads the
inventory, the CA and the CRL, revokes and tidies, with hvac's own calls and field names.
"""
import sys
import warnings

import hvac
from hvac import exceptions

warnings.simplefilter("ignore", DeprecationWarning)
url, ca, admin_crt, admin_key, csr_file = sys.argv[1:6]
csr = open(csr_file).read()


def step(name):
    print(f"step: {name}", flush=True)


admin = hvac.Client(url=url, cert=(admin_crt, admin_key), verify=ca)
pki = admin.secrets.pki

step("role create, read, list")
pki.create_or_update_role(
    "agents",
    extra_params={
        "allowed_domains": ["claw.internal"],
        "allow_subdomains": True,
        "server_flag": False,
        "allowed_uri_sans": "spiffe://claw.internal/agent/*",
        "ttl": "1h",
        "max_ttl": "2h",
    },
)
r = pki.read_role("agents")
assert r["data"]["allowed_domains"] == ["claw.internal"], r
assert r["data"]["ttl"] == 3600 and r["data"]["client_flag"] is True, r
r = pki.list_roles()
assert r["data"]["keys"] == ["agents"], r

step("generate (issue)")
r = pki.generate_certificate("agents", "agent-30.claw.internal", extra_params={"ttl": "30m"})
d = r["data"]
for f in ["certificate", "issuing_ca", "ca_chain", "private_key", "private_key_type", "serial_number", "expiration"]:
    assert f in d, (f, d)
assert d["private_key_type"] == "ec", d
issued_serial = d["serial_number"]

step("sign a CSR")
r = pki.sign_certificate("agents", csr, "agent-31.claw.internal")
d = r["data"]
assert "private_key" not in d, d
signed_serial = d["serial_number"]
assert signed_serial != issued_serial

step("a name outside the role is refused with the reason")
try:
    pki.generate_certificate("agents", "db.example.org")
    raise AssertionError("db.example.org was issued")
except exceptions.InvalidRequest as e:
    assert "db.example.org" in str(e) and "allowed_domains" in str(e), str(e)

step("inventory")
r = pki.list_certificates()
assert sorted(r["data"]["keys"]) == sorted([issued_serial, signed_serial]), r
r = pki.read_certificate(signed_serial)
assert r["data"]["revocation_time"] == 0 and r["data"]["certificate"].startswith("-----BEGIN CERTIFICATE-----"), r

step("CA and chain")
assert pki.read_ca_certificate().startswith("-----BEGIN CERTIFICATE-----")
assert pki.read_ca_certificate_chain().count("-----BEGIN CERTIFICATE-----") >= 1

step("revoke and CRL")
r = pki.revoke_certificate(issued_serial)
assert r["data"]["revocation_time"] > 0, r
r = pki.read_certificate(issued_serial)
assert r["data"]["revocation_time"] > 0, r
assert pki.read_crl().startswith("-----BEGIN X509 CRL-----")

step("tidy")
pki.tidy(extra_params={"tidy_cert_store": True, "tidy_revoked_certs": True})

step("role delete")
pki.delete_role("agents")
try:
    pki.read_role("agents")
    raise AssertionError("the role is still there")
except exceptions.InvalidPath:
    pass

print("all PKI calls behaved", flush=True)
