"""Client authentication: who may open a Live session through the relay, and as whom.

- `projects`: tenants, read from the projects file (`projects_file` holds its schema).
- `credentials`: where a credential may travel in a request.
- `authenticator`: from a request to a `principal.Principal`, or an `principal.AuthFailure`.
- `api keys` (`keys`), identity-provider JWTs (`jwt_tokens`), Firebase ID and App Check tokens
  (`firebase`), relay session tokens (`session_tokens`, minted by `token_api`), with published
  signing keys fetched and cached by `key_sets`.

Operators' view: docs/authentication.md.
"""
