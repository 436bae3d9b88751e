# The agents' policy: each agent reads its own subtree.
name = "agents"
path "secret/data/agents/{{cert.common_name}}/*" {
  capabilities = ["create", "read", "update", "patch", "delete", "list"]
}
path "secret/metadata/agents/{{cert.uri_san}}/+/config" {
  capabilities = ["read", "list"]
}
path "secret/data/agents/{{cert.dns_san}}" { capabilities = ["read"] }
path "secret/data/serial/{{cert.serial}}" { capabilities = ["read"] }
path "secret/data/agents/admin/*" { capabilities = ["deny"] }
path "/sys/policies/acl/*" { policy = "write" }
path "sys/capabilities-self" { capabilities = ["update", "sudo"] }
