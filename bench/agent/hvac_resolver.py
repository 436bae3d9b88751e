"""The reference for `keep openclaw-resolver`: the same OpenClaw exec provider written with
hvac 2.4 (Python), the way an operator would without keep.

Reads {"protocolVersion":1,"ids":["path#key",…]} on stdin, logs in with cert auth over mTLS,
reads each KV v2 secret and answers {"protocolVersion":1,"values":{…},"errors":{…}}.
Usage: hvac_resolver.py URL CA CERT KEY ROLE
"""
import json
import sys
import warnings

warnings.simplefilter("ignore", DeprecationWarning)
import hvac  # noqa: E402
from hvac import exceptions  # noqa: E402

url, ca, cert, key, role = sys.argv[1:6]
request = json.loads(sys.stdin.read())
client = hvac.Client(url=url, cert=(cert, key), verify=ca)
client.auth.cert.login(name=role)
values, errors = {}, {}
for ref in request["ids"]:
    path, _, field = ref.partition("#")
    try:
        data = client.secrets.kv.v2.read_secret_version(path=path, raise_on_deleted_version=True)
        secret = data["data"]["data"]
        if not field and len(secret) == 1:
            field = next(iter(secret))
        if field in secret:
            values[ref] = secret[field]
        else:
            errors[ref] = {"code": "NOT_FOUND", "message": "no such key"}
    except exceptions.InvalidPath:
        errors[ref] = {"code": "NOT_FOUND", "message": "no such secret"}
    except exceptions.Forbidden:
        errors[ref] = {"code": "FORBIDDEN", "message": "denied"}
client.auth.token.revoke_self()
sys.stdout.write(json.dumps({"protocolVersion": 1, "values": values, "errors": errors}))
