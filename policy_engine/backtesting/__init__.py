"""Backtesting: replay payment history against rule-pack versions (``backtest``), with an HTML report.

``policy_engine.backtesting.backtest(FILE, rules=..., baseline=...)`` returns a frozen :class:`BacktestResult`;
``policy-engine backtest`` is its command line. Synthetic traffic to replay: :mod:`policy_engine.synthetic`.
"""

from .csvio import CsvLayoutError
from .metrics import CostModel, CostModelError, LabelMetrics
from .result import BacktestResult, BadLine, ExampleRef, Flip, LabelReport, PackReport, PatternReport, RuleReport
from .run import BacktestError, backtest

__all__ = [
    "BacktestError",
    "BacktestResult",
    "BadLine",
    "CostModel",
    "CostModelError",
    "CsvLayoutError",
    "ExampleRef",
    "Flip",
    "LabelMetrics",
    "LabelReport",
    "PackReport",
    "PatternReport",
    "RuleReport",
    "backtest",
]
