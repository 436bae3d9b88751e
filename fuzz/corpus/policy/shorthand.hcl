path "a/*" { policy = "sudo" }
path "a/b" { policy = "deny" }
path "a/+/c*" { capabilities = ["update", "create"] }
