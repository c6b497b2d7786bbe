"""The options of an installation as one checked value, :class:`Options`.

Its fields are the rows of :data:`tracedfuture.options.INSTALL_OPTIONS`, in their
order (tests/test_options.py pins it), which hold their defaults, documentation
and checks (:func:`~tracedfuture.options.check_install`). It lives apart from the
table so that reading the table (``tracedfuture run``, the start-up hook) does not
import :mod:`dataclasses`: an installation keeps the checked values and makes its
``Options`` only when asked. Import it as ``tracedfuture.Options`` or
``tracedfuture.options.Options``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import _BY_NAME, INSTALL_OPTIONS, check_install

__all__ = ["Options"]


def _field(name: str) -> Any:
    """The field of the option ``name``: its default is its row's."""
    return field(default=_BY_NAME[name].default)


@dataclass(frozen=True, kw_only=True)
class Options:
    """The options of :func:`tracedfuture.install`, :func:`tracedfuture.run` and
    :func:`tracedfuture.loop_factory`, checked when made (see the module docs).

    The list below is generated from the table: name, default, ``tracedfuture
    run`` flag, variable (after ``TRACEDFUTURE_`` or ``OTEL_PYTHON_TRACEDFUTURE_``).
    """

    capture_values: bool = _field("capture_values")
    redact: Callable[[str], str] | None = _field("redact")  # noqa: RUF009 - a field(), made by _field
    max_bytes: int = _field("max_bytes")
    max_memory: int = _field("max_memory")
    flush_interval: float = _field("flush_interval")
    max_failures: int = _field("max_failures")
    export_timeout: float = _field("export_timeout")
    sample_rate: float = _field("sample_rate")
    tail: bool = _field("tail")
    slow: float = _field("slow")
    include_modules: tuple[str, ...] = _field("include_modules")
    exclude_modules: tuple[str, ...] = _field("exclude_modules")
    include_names: tuple[str, ...] = _field("include_names")
    exclude_names: tuple[str, ...] = _field("exclude_names")
    app_modules: tuple[str, ...] = _field("app_modules")

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> Options:
        """``Options(**options)``."""
        return cls(**options)

    @classmethod
    def of_checked(cls, values: Mapping[str, Any]) -> Options:
        """The Options of values :func:`~tracedfuture.options.check_install` returned
        (not checked again): an installation's, made when first asked for."""
        options = cls.__new__(cls)
        _generated_init(options, **values)
        return options


def _document() -> str:
    lines = [Options.__doc__ or "", ""]
    for option in INSTALL_OPTIONS:
        surfaces = ", ".join(s for s in (option.flag and f"``{option.flag}``", option.env and f"``{option.env}``") if s)
        lines.append(f"    ``{option.name}`` = ``{option.default!r}``" + (f" ({surfaces})" if surfaces else ""))
        lines.append(f"        {option.doc}")
    return "\n".join(lines)


Options.__doc__ = _document()
# The generated __init__ sets the fields; this one checks them first (every
# surface's words, check_install) and says which option an unknown keyword
# meant. Type checkers still see the generated signature.
_generated_init = Options.__init__


@functools.wraps(_generated_init)  # help() and inspect.signature() still show the fields
def _init(self: Options, **options: Any) -> None:
    _generated_init(self, **check_install(options))


Options.__init__ = _init  # type: ignore[method-assign]
# Public as tracedfuture.Options (tracedfuture/__init__.py): its repr names the package.
Options.__module__ = "tracedfuture"
