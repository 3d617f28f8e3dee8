"""`field__in_array=values`: `IN` over a list, as one array parameter on PostgreSQL.

`field__in=values` with a chunk's 200 ids puts 200 placeholders in the SQL: Django compiles and
prepares a parameter each, and psycopg parses the statement again every time (it caches the parse
only for statements of up to 50 parameters). A chunk's queries carry ~2,600 such parameters. On
PostgreSQL this lookup is `field = ANY(%s::type[])` with the list as one parameter (the same plan: the
server turns an `IN` list into `= ANY(ARRAY[...])` itself); elsewhere it is `__in`. For a list of
values only (a subquery stays `__in`).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, ForeignObject
from django.db.models.lookups import In
from django.db.models.sql.compiler import SQLCompiler


class InArray(In):
    lookup_name = "in_array"

    def as_postgresql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> tuple[str, Any]:
        if not self.rhs_is_direct_value():
            return super().as_sql(compiler, connection)
        field = self.lhs.output_field
        values = [field.get_db_prep_value(v, connection, prepared=True) for v in self.rhs if v is not None]
        if not values:
            raise EmptyResultSet  # as `__in` does: no query at all
        lhs, lhs_params = self.process_lhs(compiler, connection)
        return f"{lhs} = ANY(%s::{field.db_type(connection)}[])", (*lhs_params, values)


Field.register_lookup(InArray)
ForeignObject.register_lookup(InArray)  # a foreign key's lookups do not inherit Field's
