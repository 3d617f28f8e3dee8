"""Indexes and index migrations that PostgreSQL (production) and SQLite (the zero-setup default) both
accept: PostgreSQL gets the form a large table needs, SQLite the plain equivalent."""

from __future__ import annotations

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class BrinOnPostgresIndex(models.Index):
    """A BRIN index on PostgreSQL, a plain one elsewhere. For a column that grows with insertion order
    (created_at, received_at): a few pages per million rows, nearly nothing to maintain per write."""

    def create_sql(self, model, schema_editor, using="", **kwargs):
        if schema_editor.connection.vendor == "postgresql":
            using = " USING brin"
        return super().create_sql(model, schema_editor, using=using, **kwargs)


class _ConcurrentlyOnPostgres:
    """The concurrent operation (the next class in the MRO) on PostgreSQL, `plain`'s elsewhere."""

    plain: type[migrations.AddIndex] | type[migrations.RemoveIndex]

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        return self.plain.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        return self.plain.database_backwards(self, app_label, schema_editor, from_state, to_state)


class AddIndexConcurrentlyOnPostgres(_ConcurrentlyOnPostgres, AddIndexConcurrently):
    """CREATE INDEX CONCURRENTLY on PostgreSQL (writes go on while a large table is indexed); a plain
    AddIndex elsewhere. The migration needs `atomic = False`."""

    plain = migrations.AddIndex


class RemoveIndexConcurrentlyOnPostgres(_ConcurrentlyOnPostgres, RemoveIndexConcurrently):
    """DROP INDEX CONCURRENTLY on PostgreSQL, a plain RemoveIndex elsewhere (`atomic = False`)."""

    plain = migrations.RemoveIndex
