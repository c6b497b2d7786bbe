# mypy's view of tracedfuture.exporters (see pyproject.toml's [tool.mypy]): the same
# module as `exporters.otel`, which mypy checks where it sits in the repository.
from exporters.otel import *  # noqa: F403
