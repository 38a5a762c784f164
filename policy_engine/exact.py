"""The one decimal context for exact money arithmetic (DESIGN §4: money is exact).

Products of an amount (at most 18 digits) and a reference rate, and sums of request amounts, never round in this
context: ``Inexact`` (or ``InvalidOperation``) would raise instead. It sits below everything that computes with
money (the request preparer, the python matcher, pack checks, engine-kept aggregates), so none of them needs
another for it.
"""

from __future__ import annotations

from decimal import Context, Inexact, InvalidOperation

EXACT = Context(prec=80, traps=[Inexact, InvalidOperation])
