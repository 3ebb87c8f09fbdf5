"""The backbone's side: ingest workers that take the nodes' batches from an MQTT 5 shared
subscription into PostgreSQL once each (docs/backbone.md, "Running the ingest").

- migrations: the schema's steps (SQL); schema: the version table, migrate and check;
- messages: what an MQTT message is (a batch, a status, a health report or a dead letter),
  decoded with edge_agent.wire;
- writer: a group of messages into the database in one transaction;
- ingest: the worker (subscription, persistent session, acknowledgements after commit).

psycopg (the ``backbone`` extra) is imported by writer and ingest only.
"""
