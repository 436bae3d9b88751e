
# Every agent reads and writes its own folder, nothing else.
path "secret/data/agents/{{cert.common_name}}/*" {
  capabilities = ["create", "read", "update"]
}
path "secret/metadata/agents/{{cert.common_name}}/*" {
  capabilities = ["list", "read"]
}
