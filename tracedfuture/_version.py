"""The version of tracedfuture: one place, below every layer (``tracedfuture.__version__``)."""

__version__ = "0.1.0"
