"""The web dashboard at `/ui` (DESIGN §7): the caller's jobs across clusters and partitions, a job's page
(spec, replicas, events, a log tail that can follow), delete with confirmation.

- `settings`: the `ui` configuration section (`UiSettings`).
- `session`: the signed-in user in an encrypted, authenticated cookie (any replica reads it); CSRF tokens.
- `signin`: OIDC authorization code + PKCE against the gateway's issuer; the ID token is verified by the
  gateway's own verifier. With `auth.mode: none` (the demo) a user-name prompt instead.
- `handlers`: the pages, the static assets and the session-authenticated JSON the pages read
  (`/ui/api/...`, the same JobService and diagnostics as the API, so the same rights).
- `static/`: vanilla HTML/JS/CSS, served as they are (no build step).

This package's `__init__` imports nothing: `gateway.config` imports `settings` from here.
"""
