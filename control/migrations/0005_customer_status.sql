-- callbridge schema, version 5: customers managed by a platform admin (/v1.0/customers, issue 16).
-- A customer is active or disabled; disabling revokes its access keys, refuses its new calls and
-- ends its live ones (control/customers.py). Contact e-mail and a free description for operators.
-- Rows written before this migration (the bootstrap customer) are active.

ALTER TABLE {p}customers ADD COLUMN status VARCHAR(16) NOT NULL DEFAULT 'active';
ALTER TABLE {p}customers ADD COLUMN email VARCHAR(255) NOT NULL DEFAULT '';
ALTER TABLE {p}customers ADD COLUMN description VARCHAR(1024) NOT NULL DEFAULT '';
ALTER TABLE {p}customers ADD COLUMN tm_disable VARCHAR(26) NULL;
CREATE INDEX {p}ix_customers_created ON {p}customers (tm_create);
