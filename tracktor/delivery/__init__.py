"""`bin/tracktor deliver`: performs what tracktor.actions asks (letters over SMTP, webhooks,
in-app messages, property sets and events), each action_id once, and records every outcome
as an event on tracktor.derived (docs/workflows.md)."""
