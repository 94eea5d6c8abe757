-- callbridge schema, version 1. Portable between SQLite and MariaDB: {p} is the table prefix,
-- {table_options} the MariaDB engine/charset clause. Timestamps are VARCHAR(26) UTC text
-- 'YYYY-MM-DD HH:MM:SS.ffffff' (microseconds, sortable, identical in both backends); tm_delete is
-- NULL until a row is soft-deleted. JSON documents live in TEXT columns.

CREATE TABLE {p}customers (
  id CHAR(36) NOT NULL PRIMARY KEY,
  customer_id CHAR(36) NOT NULL,
  name VARCHAR(255) NOT NULL,
  tm_create VARCHAR(26) NOT NULL,
  tm_update VARCHAR(26) NOT NULL,
  tm_delete VARCHAR(26) NULL
){table_options};

CREATE TABLE {p}accesskeys (
  id CHAR(36) NOT NULL PRIMARY KEY,
  customer_id CHAR(36) NOT NULL,
  name VARCHAR(255) NOT NULL,
  role VARCHAR(32) NOT NULL,
  token_hash CHAR(64) NOT NULL,
  token_prefix VARCHAR(16) NOT NULL,
  tm_expire VARCHAR(26) NULL,
  tm_create VARCHAR(26) NOT NULL,
  tm_update VARCHAR(26) NOT NULL,
  tm_delete VARCHAR(26) NULL
){table_options};
CREATE UNIQUE INDEX {p}ix_accesskeys_hash ON {p}accesskeys (token_hash);
CREATE INDEX {p}ix_accesskeys_customer ON {p}accesskeys (customer_id, tm_create);

CREATE TABLE {p}agents (
  id CHAR(36) NOT NULL PRIMARY KEY,
  customer_id CHAR(36) NOT NULL,
  name VARCHAR(255) NOT NULL,
  is_default INTEGER NOT NULL,
  detail TEXT NOT NULL,
  tm_create VARCHAR(26) NOT NULL,
  tm_update VARCHAR(26) NOT NULL,
  tm_delete VARCHAR(26) NULL
){table_options};
CREATE INDEX {p}ix_agents_customer ON {p}agents (customer_id, tm_create);

-- How a new call finds its agent: AudioSocket UUID or dialled number. Derived from the agent's
-- "routes"; rewritten with it, so hard-deleted (the agent row keeps the soft-deleted history).
CREATE TABLE {p}agent_routes (
  id CHAR(36) NOT NULL PRIMARY KEY,
  customer_id CHAR(36) NOT NULL,
  agent_id CHAR(36) NOT NULL,
  kind VARCHAR(16) NOT NULL,
  value VARCHAR(64) NOT NULL,
  tm_create VARCHAR(26) NOT NULL,
  tm_update VARCHAR(26) NOT NULL,
  tm_delete VARCHAR(26) NULL
){table_options};
CREATE UNIQUE INDEX {p}ix_agent_routes_value ON {p}agent_routes (kind, value);
CREATE INDEX {p}ix_agent_routes_agent ON {p}agent_routes (agent_id);

CREATE TABLE {p}calls (
  id CHAR(36) NOT NULL PRIMARY KEY,
  customer_id CHAR(36) NOT NULL,
  agent_id VARCHAR(36) NOT NULL,
  leg VARCHAR(32) NOT NULL,
  leg_ref VARCHAR(128) NOT NULL,
  direction VARCHAR(16) NOT NULL,
  source VARCHAR(64) NOT NULL,
  destination VARCHAR(64) NOT NULL,
  status VARCHAR(16) NOT NULL,
  hangup_cause VARCHAR(16) NOT NULL,
  hangup_reason VARCHAR(255) NOT NULL,
  duration_ms INTEGER NOT NULL,
  tm_answer VARCHAR(26) NULL,
  tm_hangup VARCHAR(26) NULL,
  tm_create VARCHAR(26) NOT NULL,
  tm_update VARCHAR(26) NOT NULL,
  tm_delete VARCHAR(26) NULL
){table_options};
CREATE INDEX {p}ix_calls_customer ON {p}calls (customer_id, tm_create);

CREATE TABLE {p}transcripts (
  id CHAR(36) NOT NULL PRIMARY KEY,
  customer_id CHAR(36) NOT NULL,
  call_id CHAR(36) NOT NULL,
  role VARCHAR(16) NOT NULL,
  text TEXT NOT NULL,
  tm_create VARCHAR(26) NOT NULL,
  tm_update VARCHAR(26) NOT NULL,
  tm_delete VARCHAR(26) NULL
){table_options};
CREATE INDEX {p}ix_transcripts_call ON {p}transcripts (call_id, tm_create);

CREATE TABLE {p}conferences (
  id CHAR(36) NOT NULL PRIMARY KEY,
  customer_id CHAR(36) NOT NULL,
  name VARCHAR(255) NOT NULL,
  status VARCHAR(16) NOT NULL,
  tm_create VARCHAR(26) NOT NULL,
  tm_update VARCHAR(26) NOT NULL,
  tm_delete VARCHAR(26) NULL
){table_options};
CREATE INDEX {p}ix_conferences_customer ON {p}conferences (customer_id, tm_create);

CREATE TABLE {p}participants (
  id CHAR(36) NOT NULL PRIMARY KEY,
  customer_id CHAR(36) NOT NULL,
  conference_id CHAR(36) NOT NULL,
  call_id CHAR(36) NOT NULL,
  tm_create VARCHAR(26) NOT NULL,
  tm_update VARCHAR(26) NOT NULL,
  tm_delete VARCHAR(26) NULL
){table_options};
CREATE INDEX {p}ix_participants_conference ON {p}participants (conference_id, tm_create);

CREATE TABLE {p}webhooks (
  id CHAR(36) NOT NULL PRIMARY KEY,
  customer_id CHAR(36) NOT NULL,
  url VARCHAR(2048) NOT NULL,
  secret VARCHAR(255) NOT NULL,
  event_types TEXT NOT NULL,
  tm_create VARCHAR(26) NOT NULL,
  tm_update VARCHAR(26) NOT NULL,
  tm_delete VARCHAR(26) NULL
){table_options};
CREATE INDEX {p}ix_webhooks_customer ON {p}webhooks (customer_id, tm_create);

CREATE TABLE {p}deliveries (
  id CHAR(36) NOT NULL PRIMARY KEY,
  customer_id CHAR(36) NOT NULL,
  webhook_id CHAR(36) NOT NULL,
  event_id CHAR(36) NOT NULL,
  attempt INTEGER NOT NULL,
  status VARCHAR(16) NOT NULL,
  status_code INTEGER NOT NULL,
  error VARCHAR(255) NOT NULL,
  tm_create VARCHAR(26) NOT NULL,
  tm_update VARCHAR(26) NOT NULL,
  tm_delete VARCHAR(26) NULL
){table_options};
CREATE INDEX {p}ix_deliveries_webhook ON {p}deliveries (webhook_id, tm_create);

CREATE TABLE {p}events (
  id CHAR(36) NOT NULL PRIMARY KEY,
  customer_id CHAR(36) NOT NULL,
  type VARCHAR(64) NOT NULL,
  resource_id VARCHAR(36) NOT NULL,
  data TEXT NOT NULL,
  tm_create VARCHAR(26) NOT NULL,
  tm_update VARCHAR(26) NOT NULL,
  tm_delete VARCHAR(26) NULL
){table_options};
CREATE INDEX {p}ix_events_customer ON {p}events (customer_id, tm_create);

CREATE TABLE {p}messages (
  id CHAR(36) NOT NULL PRIMARY KEY,
  customer_id CHAR(36) NOT NULL,
  call_id VARCHAR(36) NOT NULL,
  destination VARCHAR(32) NOT NULL,
  text TEXT NOT NULL,
  status VARCHAR(16) NOT NULL,
  provider VARCHAR(32) NOT NULL,
  tm_create VARCHAR(26) NOT NULL,
  tm_update VARCHAR(26) NOT NULL,
  tm_delete VARCHAR(26) NULL
){table_options};

CREATE TABLE {p}audits (
  id CHAR(36) NOT NULL PRIMARY KEY,
  customer_id VARCHAR(36) NOT NULL,
  actor VARCHAR(64) NOT NULL,
  action VARCHAR(16) NOT NULL,
  path VARCHAR(255) NOT NULL,
  status_code INTEGER NOT NULL,
  request_id VARCHAR(64) NOT NULL,
  remote_addr VARCHAR(64) NOT NULL,
  tm_create VARCHAR(26) NOT NULL,
  tm_update VARCHAR(26) NOT NULL,
  tm_delete VARCHAR(26) NULL
){table_options};
CREATE INDEX {p}ix_audits_customer ON {p}audits (customer_id, tm_create);
