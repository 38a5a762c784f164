"""The plan on DuckDB (embedded, in this process) over a converted Parquet history."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .dialect import Dialect
from .plan import Plan, with_ctes

#: the column types of a relation built in Python (:meth:`DuckExecutor.register`), as Arrow types' names
_ARROW = {"string": "string", "date": "date32", "boolean": "bool_"}


class DuckExecutor:
    """A DuckDB connection in this process; ``threads`` caps the cores it uses."""

    dialect = Dialect()

    def __init__(self, threads: int | None = None):
        import duckdb

        self.con = duckdb.connect(":memory:")
        self.con.execute("SET TimeZone = 'UTC'")
        self.con.execute("SET enable_progress_bar = false")
        if threads is not None:
            self.con.execute(f"SET threads = {int(threads)}")

    def materialize(self, name: str, sql: str) -> None:
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}")

    def materialize_plan(self, name: str, plan: Plan, select: str) -> None:
        # one statement: DuckDB plans the whole chain of CTEs in well under a second
        self.materialize(name, plan.query(select))

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return self.con.execute(sql).fetchall()

    def query(self, ctes: Sequence[tuple[str, str]], select: str) -> list[tuple[Any, ...]]:
        return self.rows(with_ctes(ctes, select))

    def drop(self, name: str) -> None:
        self.con.execute(f"DROP TABLE IF EXISTS {name}")

    def register(self, name: str, columns: Sequence[tuple[str, str]], rows: list[tuple[Any, ...]]) -> None:
        """``rows`` as the relation ``name`` (an Arrow table DuckDB reads in place)."""
        import pyarrow as pa

        schema = pa.schema([(column, getattr(pa, _ARROW[kind])()) for column, kind in columns])
        arrays = [pa.array([row[i] for row in rows], type=f.type) for i, f in enumerate(schema)]
        self.con.register(name, pa.Table.from_arrays(arrays, schema=schema))

    def unregister(self, name: str) -> None:
        self.con.unregister(name)

    def close(self) -> None:
        self.con.close()

    def source(self, path: str) -> str:
        return f"read_parquet({self.dialect.string(path)})"
