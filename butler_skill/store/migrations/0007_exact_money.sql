-- Money exactly: integer pico-USD (1e-12 USD) beside the old REAL columns, which lose digits (a reported
-- cost of 0.00001623 must stay 0.00001623, and sums of many small costs must not drift). BIGINT: a 64-bit
-- pico-USD counter holds up to about 9.2 million USD. The REAL columns are still written (rounded, for
-- readers that predate this migration) but no longer read. Existing rows are carried over as well as REAL
-- allows. Also kept per usage record: the 1-hour part of the cache writes, server-side searches, and
-- OpenRouter's upstream_inference_cost (BYOK) apart from the cost that counts.
ALTER TABLE key_day_counters ADD COLUMN cost_pusd BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN cost_pusd BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_records ADD COLUMN cost_pusd BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_records ADD COLUMN upstream_cost_pusd BIGINT;
ALTER TABLE usage_records ADD COLUMN cache_write_1h_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_records ADD COLUMN web_search_requests INTEGER NOT NULL DEFAULT 0;
UPDATE key_day_counters SET cost_pusd = CAST(ROUND(cost_usd * 1000000000000) AS BIGINT);
UPDATE sessions SET cost_pusd = CAST(ROUND(cost_usd * 1000000000000) AS BIGINT);
UPDATE usage_records SET cost_pusd = CAST(ROUND(cost_usd * 1000000000000) AS BIGINT);
