# mypy's view of tracedfuture.exporters (see pyproject.toml's [tool.mypy]): the same
# module as `exporters`, which mypy checks where it sits in the repository.
from exporters import *  # noqa: F403
