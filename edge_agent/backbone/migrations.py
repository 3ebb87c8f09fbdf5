"""The database schema's steps, in order: each a number, a name and its SQL, applied by
schema.migrate() in one transaction each. A step, once released, never changes: a change
is a new step at the end.

Step 1, the tables (docs/backbone.md, "The database", says why each is so):

- ``streams`` and ``channels``: a (node, stream) and a channel's description (name, unit,
  resolution, reconstruction, bound) are rows of their own, so a sample costs a channel id,
  not its strings. A channel whose description changes (a node's new configuration) gets a
  new id; its samples keep what they were sent under.
- ``batches``: one row per dedupe key ``(stream, epoch, seq)``, with its times, flags,
  version, sizes and ``received_count`` (2 and more: duplicates received). Not partitioned:
  a partitioned table's unique key must hold the partition's column, and a batch's ``t0``
  changes when a node restamps it after its clock synchronised, so the same key could land
  twice. One row per batch is a fiftieth of its samples' rows; it is the dedupe ledger, kept
  longer than the samples.
- ``samples``: time, value, channel id, quality, and the batch's clock_unsynced, partitioned
  by month on the time (``ensure_sample_partitions``); times outside the months made (a Pi's
  1970 before its clock is set) go to ``samples_default``. No unique key and no foreign key:
  a batch's samples are written only in the transaction that inserted its key, once.
- ``node_status`` (birth, will, last health), ``dead_letters`` (what did not decode, with
  the reason, never dropped).
- Views: ``sample_rows`` (samples with their names and each one's error bound), ``batch_gaps``
  (holes in seq per (node, stream, epoch)), ``duplicates``, ``ingest_lag``.

Step 2, what a private stream's rows are (docs/privacy.md): ``privacy_level(version, flags)``
names the level flag bits 3-4 carry in versions 2-4 (``raw``, ``aggregate``, ``total``;
version 1 has no level, its bits 3-4 are ignored), and the view ``stream_privacy`` says, per
(node, stream) and each level and period it was sent at, which batches and times the
database holds of it: a sample row of a private stream is a statistic over its period (its
channel named ``BASE.STATISTIC``), not a reading, and a stream whose configuration moved
from raw to aggregate shows both spans. No table changes: the level and the period are in
``batches.flags`` and ``batches.period_ms`` since step 1.
"""

from __future__ import annotations

STEP_1 = r"""
CREATE TABLE streams (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    node text NOT NULL,
    stream text NOT NULL,
    first_seen timestamptz NOT NULL DEFAULT now(),
    UNIQUE (node, stream)
);

CREATE TABLE channels (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id integer NOT NULL REFERENCES streams,
    name text NOT NULL,
    unit text NOT NULL,
    resolution double precision NOT NULL,
    reconstruction text NOT NULL,
    bound double precision NOT NULL,
    bound_relative boolean NOT NULL,
    first_seen timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream_id, name, unit, resolution, reconstruction, bound, bound_relative)
);

CREATE TABLE batches (
    stream_id integer NOT NULL REFERENCES streams,
    epoch bigint NOT NULL,
    seq bigint NOT NULL,
    t0 timestamptz NOT NULL,
    t_last timestamptz,
    period_ms bigint NOT NULL,
    flags smallint NOT NULL,
    historical boolean GENERATED ALWAYS AS ((flags & 1) <> 0) STORED,
    clock_unsynced boolean GENERATED ALWAYS AS ((flags & 2) <> 0) STORED,
    version smallint NOT NULL,
    payload_bytes integer NOT NULL,
    samples integer NOT NULL,
    received timestamptz NOT NULL,
    last_received timestamptz NOT NULL,
    stored timestamptz NOT NULL DEFAULT clock_timestamp(),
    received_count integer NOT NULL,
    PRIMARY KEY (stream_id, epoch, seq)
);
CREATE INDEX batches_received ON batches (received);
CREATE INDEX batches_duplicates ON batches (last_received) WHERE received_count > 1;

CREATE TABLE samples (
    t timestamptz NOT NULL,
    value double precision NOT NULL,
    channel_id integer NOT NULL,
    quality smallint,
    clock_unsynced boolean NOT NULL
) PARTITION BY RANGE (t);
CREATE INDEX samples_channel_t ON samples (channel_id, t);
CREATE TABLE samples_default PARTITION OF samples DEFAULT;

CREATE TABLE node_status (
    node text PRIMARY KEY,
    state text,
    status jsonb,
    status_received timestamptz,
    birth timestamptz,
    will timestamptz,
    health jsonb,
    health_received timestamptz
);

CREATE TABLE dead_letters (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic text NOT NULL,
    payload bytea NOT NULL,
    reason text NOT NULL,
    received timestamptz NOT NULL,
    stored timestamptz NOT NULL DEFAULT now()
);

-- Monthly partitions of samples (UTC months) from months_back before this one to
-- months_ahead after it; rows already in samples_default for a new month move into it.
-- Returns how many it made. Old months are detached with
-- ALTER TABLE samples DETACH PARTITION samples_YYYYMM (not CONCURRENTLY: there is a default).
CREATE FUNCTION ensure_sample_partitions(months_back integer DEFAULT 1, months_ahead integer DEFAULT 3)
RETURNS integer LANGUAGE plpgsql AS $fn$
DECLARE
    this_month timestamp := date_trunc('month', now() AT TIME ZONE 'UTC');
    lo timestamptz;
    hi timestamptz;
    part text;
    made integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('edge_agent.ensure_sample_partitions'));
    FOR i IN -months_back .. months_ahead LOOP
        lo := (this_month + make_interval(months => i)) AT TIME ZONE 'UTC';
        hi := (this_month + make_interval(months => i + 1)) AT TIME ZONE 'UTC';
        part := 'samples_' || to_char(this_month + make_interval(months => i), 'YYYYMM');
        CONTINUE WHEN to_regclass(quote_ident(part)) IS NOT NULL;
        EXECUTE format('CREATE TABLE %I (LIKE samples INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part);
        EXECUTE format(
            'WITH moved AS (DELETE FROM samples_default WHERE t >= %L AND t < %L RETURNING *) '
            'INSERT INTO %I SELECT * FROM moved', lo, hi, part);
        EXECUTE format('ALTER TABLE samples ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
        made := made + 1;
    END LOOP;
    RETURN made;
END
$fn$;

CREATE VIEW sample_rows AS
SELECT s.node, s.stream, c.name AS channel, c.unit, x.t, x.value, x.quality, c.reconstruction,
       CASE WHEN c.bound_relative THEN c.bound * (abs(x.value) + c.resolution / 2) + c.resolution / 2
            ELSE c.bound + c.resolution / 2 END AS bound,
       x.clock_unsynced, x.channel_id
FROM samples x JOIN channels c ON c.id = x.channel_id JOIN streams s ON s.id = c.stream_id;

CREATE VIEW batch_gaps AS
SELECT s.node, s.stream, g.epoch, g.prev_seq + 1 AS first_missing, g.seq - 1 AS last_missing,
       g.seq - g.prev_seq - 1 AS missing, g.received AS seen_after, now() - g.received AS age
FROM (SELECT stream_id, epoch, seq, received,
             lag(seq) OVER (PARTITION BY stream_id, epoch ORDER BY seq) AS prev_seq
      FROM batches) g
JOIN streams s ON s.id = g.stream_id
WHERE g.seq - g.prev_seq > 1;

CREATE VIEW duplicates AS
SELECT s.node, s.stream, b.epoch, b.seq, b.received_count, b.received, b.last_received
FROM batches b JOIN streams s ON s.id = b.stream_id
WHERE b.received_count > 1;

-- Per stream over the last hour received: when it was last heard, its newest sample, and
-- the lag from a live batch's newest point to its arrival at a worker (an upper bound of
-- seal-to-worker: a deadband's last point may be older than the seal), and from its arrival
-- to its row's insert.
CREATE VIEW ingest_lag AS
SELECT s.node, s.stream, count(*) AS batches, max(b.received) AS last_received,
       max(b.t_last) AS newest_sample, now() - max(b.received) AS silent_for,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM b.received - b.t_last))
           FILTER (WHERE NOT b.historical AND NOT b.clock_unsynced) AS live_lag_p50_s,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM b.received - b.t_last))
           FILTER (WHERE NOT b.historical AND NOT b.clock_unsynced) AS live_lag_p99_s,
       avg(extract(epoch FROM b.stored - b.received)) AS write_delay_s
FROM batches b JOIN streams s ON s.id = b.stream_id
WHERE b.received > now() - interval '1 hour'
GROUP BY s.node, s.stream;
"""

STEP_2 = r"""
CREATE FUNCTION privacy_level(version smallint, flags smallint) RETURNS text
IMMUTABLE STRICT PARALLEL SAFE LANGUAGE sql AS $fn$
    SELECT CASE WHEN version < 2 THEN 'raw'
                ELSE (ARRAY['raw', 'aggregate', 'total', 'undefined'])[((flags >> 3) & 3) + 1] END
$fn$;

-- Per (node, stream), each level and period it was sent at: the batches the database holds
-- and the span of their times. period_ms is the privacy period above raw (each sample row
-- is then a statistic over one period, at its end), NULL at raw.
CREATE VIEW stream_privacy AS
SELECT s.node, s.stream, p.level,
       CASE WHEN p.level = 'raw' THEN NULL ELSE b.period_ms END AS period_ms,
       count(*) AS batches, min(b.t0) AS first_t, max(coalesce(b.t_last, b.t0)) AS last_t,
       max(b.received) AS last_received
FROM batches b
JOIN streams s ON s.id = b.stream_id
CROSS JOIN LATERAL (SELECT privacy_level(b.version, b.flags) AS level) p
GROUP BY s.node, s.stream, p.level, 4;
"""

# (number, name, SQL): numbers from 1, without holes.
MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (1, "tables, partitions and views", STEP_1),
    (2, "privacy levels: privacy_level() and stream_privacy", STEP_2),
)
