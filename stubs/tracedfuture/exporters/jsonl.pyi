# mypy's view of tracedfuture.exporters (see pyproject.toml's [tool.mypy]): the same
# module as `exporters.jsonl`, which mypy checks where it sits in the repository.
from exporters.jsonl import *  # noqa: F403
