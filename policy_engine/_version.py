"""The package version, in a module of its own so that anything inside the package can read it without importing
the package's public face (``policy_engine/__init__.py`` imports the engine, which needs the version)."""

__version__ = "0.1.0"
