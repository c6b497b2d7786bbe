# mypy's view of tracedfuture.exporters (see pyproject.toml's [tool.mypy]): the same
# module as `exporters.structlog`, which mypy checks where it sits in the repository.
from exporters.structlog import *  # noqa: F403
