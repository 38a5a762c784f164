"""The plan on Spark: the same SQL (Spark's dialect) through a SparkSession, on ``local[*]`` or a cluster.

The plan is pure Spark SQL over ``parquet.`PATH```: executors need nothing but Spark (no Python UDF, so no
policy_engine on the cluster). The driver compiles the plan, screens names (the screening stage collects the
distinct names to it and sends the answers back as a broadcast relation, :mod:`.screens`) and reads the few
aggregate rows back.

Spark runs the plan one CTE at a time, each a temporary view over the previous ones cut off by
``localCheckpoint()`` (kept for the queries that read them, e.g. the screening stage's, until the plan's table
is materialised): as one statement, Catalyst inlines the chain of projections into every column that reads
them (each rule's condition repeats the derived fields' CASE trees, twice over for its fired and undecided
flags) and ran out of a 2 GB heap planning the ~60-rule pack; step by step, each plan is one projection over
columns already computed, and the pack plans in seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .dialect import SparkDialect
from .plan import Plan

#: Exact decimals: a product wider than 38 digits is an error (ANSI), never rounded (allowPrecisionLoss off);
#: instants are read and written in UTC, the plan converts to each PSP's zone itself.
SESSION_CONFIG = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.decimalOperations.allowPrecisionLoss": "false",
    "spark.sql.ansi.enabled": "true",
    # constraint propagation keeps, per projection, an equality for every column with its whole expression
    # and canonicalises them all: on the rule pack's deep CASE trees it exhausted the driver's heap
    "spark.sql.constraintPropagation.enabled": "false",
}
#: settings of the Spark application itself, fixed once it started
APP_CONFIG = {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false"}


def spark_session(master: str, config: dict[str, str] | None = None) -> Any:
    """A session for the plan; ``config``: more Spark settings (e.g. ``spark.driver.memory`` for local mode)."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(master).appName("policy-engine backtest")
    for key, value in {**SESSION_CONFIG, **APP_CONFIG, **(config or {})}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    for key, value in SESSION_CONFIG.items():  # a session that already existed gets them too
        session.conf.set(key, value)
    session.sparkContext.setLogLevel("ERROR")
    return session


class SparkExecutor:
    """The plan's queries on a SparkSession; ``stop`` (default) stops the session on :meth:`close`."""

    dialect = SparkDialect()

    def __init__(self, master: str, session: Any = None):
        self.session = session or spark_session(master)
        self._owned = session is None
        #: the plan's steps computed so far, as temporary views (name -> SQL), shared by the queries over them
        self._steps: dict[str, str] = {}

    def materialize(self, name: str, sql: str) -> None:
        self.session.sql(f"CACHE TABLE {name} AS {sql}")

    def _run_steps(self, ctes: Sequence[tuple[str, str]]) -> None:
        """Each CTE as a temporary view, checkpointed, unless an earlier query computed it already (the executor
        runs one plan: a step's name is one relation; :meth:`materialize_plan` drops them)."""
        for step, sql in ctes:
            if self._steps.get(step) == sql:
                continue
            frame = self.session.sql(sql)
            if self._steps:  # the first step reads the Parquet source: checkpointing it would copy the input
                frame = frame.localCheckpoint(eager=True)
            frame.createOrReplaceTempView(step)
            self._steps[step] = sql

    def _drop_steps(self) -> None:
        for step in self._steps:
            self.session.catalog.dropTempView(step)
        self._steps.clear()

    def query(self, ctes: Sequence[tuple[str, str]], select: str) -> list[tuple[Any, ...]]:
        self._run_steps(ctes)
        return self.rows(select)

    def materialize_plan(self, name: str, plan: Plan, select: str) -> None:
        try:
            self._run_steps(plan.ctes)
            # a view of the DataFrame keeps its resolved plan (a SQL view would re-read the steps' views); cached
            # in memory, column by column, for the report's many narrow scans
            table = self.session.sql(select).cache()
            table.count()
            table.createOrReplaceTempView(name)
        finally:  # the table holds its rows: the steps (and their checkpoints) may go
            self._drop_steps()

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self.session.sql(sql).collect()]

    def drop(self, name: str) -> None:
        self.session.sql(f"UNCACHE TABLE IF EXISTS {name}")
        self.session.sql(f"DROP VIEW IF EXISTS {name}")

    def register(self, name: str, columns: Sequence[tuple[str, str]], rows: list[tuple[Any, ...]]) -> None:
        """``rows`` as the temporary view ``name``: a relation built on the driver and sent to every executor with
        the job (a broadcast: the screening stage's tables are a row per distinct name, the payments many more)."""
        from pyspark.sql import functions
        from pyspark.sql.types import BooleanType, DateType, StringType, StructField, StructType

        kinds = {"string": StringType(), "date": DateType(), "boolean": BooleanType()}
        schema = StructType([StructField(column, kinds[kind], True) for column, kind in columns])
        functions.broadcast(self.session.createDataFrame(rows, schema)).createOrReplaceTempView(name)

    def unregister(self, name: str) -> None:
        self.session.catalog.dropTempView(name)

    def close(self) -> None:
        self._drop_steps()
        if self._owned:
            self.session.stop()

    def source(self, path: str) -> str:
        return f"parquet.{self.dialect.ident(path)}"
