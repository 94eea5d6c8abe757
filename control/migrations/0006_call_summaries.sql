-- callbridge schema, version 6: a summary per ended call (control/summaries.py, issue 16): what
-- the call was made of (legs, agent, hang-up, turns, transcript, tool calls with their results,
-- transfer and conference outcome, recording) as a JSON document, and a short written summary
-- with a disposition: from the agent's OpenAI-compatible LLM when it has one (method 'llm'), else
-- composed from the record itself (method 'record'). One row per call.

CREATE TABLE {p}summaries (
  id CHAR(36) NOT NULL PRIMARY KEY,
  customer_id CHAR(36) NOT NULL,
  call_id CHAR(36) NOT NULL,
  method VARCHAR(16) NOT NULL,
  disposition VARCHAR(64) NOT NULL,
  text TEXT NOT NULL,
  detail MEDIUMTEXT NOT NULL,
  tm_create VARCHAR(26) NOT NULL,
  tm_update VARCHAR(26) NOT NULL,
  tm_delete VARCHAR(26) NULL
){table_options};
CREATE UNIQUE INDEX {p}ix_summaries_call ON {p}summaries (call_id);
CREATE INDEX {p}ix_summaries_customer ON {p}summaries (customer_id, tm_create);
-- a summary gathers its call's events and conference participations
CREATE INDEX {p}ix_events_resource ON {p}events (resource_id);
CREATE INDEX {p}ix_participants_call ON {p}participants (call_id);
