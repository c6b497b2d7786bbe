"""``opentelemetry-instrument`` integration: every future and task becomes a span.

With ``tracedfuture[otel]`` installed, the ``tracedfuture`` instrumentor is
registered in the ``opentelemetry_instrumentor`` entry-point group, so::

    opentelemetry-instrument --traces_exporter console python app.py

traces the futures and tasks of every event loop of ``app.py`` through
:class:`~tracedfuture.exporters.otel.OTelExporter`, into the TracerProvider that
``opentelemetry-instrument`` configured. ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=tracedfuture``
turns it off. Options of :func:`tracedfuture.install` come from these variables:

==============================================  ================================  ===============
variable                                        option                            example
==============================================  ================================  ===============
``OTEL_PYTHON_TRACEDFUTURE_SAMPLE_RATE``        ``sample_rate`` (0.0 to 1.0)      ``0.1``
``OTEL_PYTHON_TRACEDFUTURE_TAIL``               ``tail`` (true/false)             ``true``
``OTEL_PYTHON_TRACEDFUTURE_SLOW``               ``slow`` (seconds)                ``0.5``
``OTEL_PYTHON_TRACEDFUTURE_CAPTURE_VALUES``     ``capture_values`` (true/false)   ``false``
``OTEL_PYTHON_TRACEDFUTURE_BUFFER_SIZE``        ``buffer_size`` (records)         ``1000000``
``OTEL_PYTHON_TRACEDFUTURE_MAX_MEMORY``         ``max_memory`` (bytes)            ``67108864``
``OTEL_PYTHON_TRACEDFUTURE_FLUSH_INTERVAL``     ``flush_interval`` (seconds)      ``0.1``
``OTEL_PYTHON_TRACEDFUTURE_MAX_FAILURES``       ``max_failures``                  ``10``
``OTEL_PYTHON_TRACEDFUTURE_EXPORT_TIMEOUT``     ``export_timeout`` (seconds)      ``10``
``OTEL_PYTHON_TRACEDFUTURE_INCLUDE_MODULES``    ``include_modules`` (commas)      ``myapp,lib.db``
``OTEL_PYTHON_TRACEDFUTURE_EXCLUDE_MODULES``    ``exclude_modules`` (commas)      ``myapp.health``
``OTEL_PYTHON_TRACEDFUTURE_INCLUDE_NAMES``      ``include_names`` (commas)        ``worker-*``
``OTEL_PYTHON_TRACEDFUTURE_EXCLUDE_NAMES``      ``exclude_names`` (commas)        ``poll-*``
==============================================  ================================  ===============

An unset or empty variable leaves the option's default. A bad value raises
``ValueError`` naming the variable, its value and what it should be (under
``opentelemetry-instrument`` it is logged as "Instrumenting of tracedfuture
failed" and the program runs untraced). Used by hand, keyword arguments
override the environment:

>>> from tracedfuture.instrumentation import TracedFutureInstrumentor
>>> TracedFutureInstrumentor().instrument(tail=True, slow=0.25)  # doctest: +SKIP
>>> TracedFutureInstrumentor().uninstrument()  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping
from typing import Any

try:
    # The module starts with "# type: ignore": mypy sees none of its names.
    from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined,unused-ignore]
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    _msg = "tracedfuture.instrumentation needs opentelemetry-instrumentation: pip install 'tracedfuture[otel]'"
    raise ImportError(_msg, name=exc.name) from exc

from ._install import Installation, install

__all__ = ["ENV_PREFIX", "TracedFutureInstrumentor", "options_from_env"]

ENV_PREFIX = "OTEL_PYTHON_TRACEDFUTURE_"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _bool(var: str, raw: str) -> bool:
    text = raw.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    msg = f"{var}={raw!r} is not a boolean: set it to true or false"
    raise ValueError(msg)


def _float(var: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        msg = f"{var}={raw!r} is not a number: set it to a number such as 0.5"
        raise ValueError(msg) from None


def _int(var: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        msg = f"{var}={raw!r} is not an integer: set it to a whole number such as 10"
        raise ValueError(msg) from None


def _names(var: str, raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


#: Variable suffix -> (install() option, parser).
_VARIABLES: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "SAMPLE_RATE": ("sample_rate", _float),
    "TAIL": ("tail", _bool),
    "SLOW": ("slow", _float),
    "CAPTURE_VALUES": ("capture_values", _bool),
    "BUFFER_SIZE": ("buffer_size", _int),
    "MAX_MEMORY": ("max_memory", _int),
    "FLUSH_INTERVAL": ("flush_interval", _float),
    "MAX_FAILURES": ("max_failures", _int),
    "EXPORT_TIMEOUT": ("export_timeout", _float),
    "INCLUDE_MODULES": ("include_modules", _names),
    "EXCLUDE_MODULES": ("exclude_modules", _names),
    "INCLUDE_NAMES": ("include_names", _names),
    "EXCLUDE_NAMES": ("exclude_names", _names),
}


def options_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The :func:`tracedfuture.install` options set by ``OTEL_PYTHON_TRACEDFUTURE_*`` variables.

    >>> options_from_env({"OTEL_PYTHON_TRACEDFUTURE_TAIL": "true", "OTEL_PYTHON_TRACEDFUTURE_SLOW": "0.5"})
    {'tail': True, 'slow': 0.5}

    A variable with this prefix that is not listed in the module docs is an
    error too, so that a typo does not go unnoticed.
    """
    env = os.environ if environ is None else environ
    options: dict[str, Any] = {}
    for var, raw in env.items():
        if not var.startswith(ENV_PREFIX):
            continue
        known = _VARIABLES.get(var[len(ENV_PREFIX) :])
        if known is None:
            valid = ", ".join(ENV_PREFIX + suffix for suffix in _VARIABLES)
            msg = f"unknown variable {var}: tracedfuture reads {valid}"
            raise ValueError(msg)
        if not raw.strip():
            continue
        option, parse = known
        options[option] = parse(var, raw)
    return options


class TracedFutureInstrumentor(BaseInstrumentor):  # type: ignore[misc,unused-ignore]
    """Installs tracedfuture process-wide with an OTelExporter; see the module docs.

    ``instrument(tracer_provider=..., **options)``: the provider defaults to the
    global one, the options to the ``OTEL_PYTHON_TRACEDFUTURE_*`` variables.
    """

    _installation: Installation | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()  # asyncio is part of Python: nothing to check

    def _instrument(self, **kwargs: Any) -> None:
        from .exporters.otel import OTelExporter

        provider = kwargs.pop("tracer_provider", None)
        from_env = options_from_env()
        options = {**from_env, **kwargs}
        try:
            installation = install(exporters=[OTelExporter(provider)], **options)
        except (TypeError, ValueError) as exc:
            raise _blame_variable(exc, from_env, kwargs) from exc
        self._installation = installation

    def _uninstrument(self, **kwargs: Any) -> None:
        installation, self._installation = self._installation, None
        if installation is not None:
            installation.uninstall()


def _blame_variable(exc: Exception, from_env: Mapping[str, Any], kwargs: Mapping[str, Any]) -> Exception:
    """``install()``'s error about an option, restated with the variable that set it."""
    text = str(exc)
    for suffix, (option, _) in _VARIABLES.items():
        if option in from_env and option not in kwargs and text.startswith(option):
            var = ENV_PREFIX + suffix
            return ValueError(f"{var}={os.environ.get(var, '')!r}: {text}")
    return exc
