"""The decision service: the engine over HTTP (``policy-engine serve``; extra ``server``).

:mod:`.app` is a plain ASGI application over one :class:`~policy_engine.PolicyEngine` per worker process;
:mod:`.server` runs it under granian, whose supervisor hands SIGHUP to every worker as a pack reload.
Nothing here is imported by the library: ``import policy_engine`` never needs the ``server`` extra.
"""
