-- callbridge schema, version 4: a webhook may opt out of TLS certificate verification (a
-- self-signed receiver in development; issue 20). Verified unless the webhook itself says so;
-- rows written before this migration stay verified.

ALTER TABLE {p}webhooks ADD COLUMN tls_verify INTEGER NOT NULL DEFAULT 1;
