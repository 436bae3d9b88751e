# keep's built-in "default" policy: a token may manage itself, nothing more.

# Allow tokens to look up their own properties.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}

# Allow tokens to renew themselves.
path "auth/token/renew-self" {
  capabilities = ["update"]
}

# Allow tokens to revoke themselves.
path "auth/token/revoke-self" {
  capabilities = ["update"]
}

# Allow a token to look up its own capabilities on a path.
path "sys/capabilities-self" {
  capabilities = ["update"]
}
