"""The columnar backtest: the pack compiled to SQL over a payments relation (DuckDB, Spark)."""
