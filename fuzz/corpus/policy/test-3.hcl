path "secret/data/agents/{{cert.common_name}}/*" { capabilities = ["read", "create", "update"] }
path "secret/metadata/agents/{{cert.common_name}}/*" { capabilities = ["list", "read"] }