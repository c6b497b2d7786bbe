r"""``opentelemetry-instrument`` integration: every future and task becomes a span.

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
``OTEL_PYTHON_TRACEDFUTURE_REDACT``             ``redact`` (regex a line)         ``token=\S+``
``OTEL_PYTHON_TRACEDFUTURE_MAX_BYTES``          ``max_bytes`` (bytes)             ``64MiB``
``OTEL_PYTHON_TRACEDFUTURE_MAX_MEMORY``         ``max_memory`` (bytes)            ``64MiB``
``OTEL_PYTHON_TRACEDFUTURE_FLUSH_INTERVAL``     ``flush_interval`` (seconds)      ``0.1``
``OTEL_PYTHON_TRACEDFUTURE_MAX_FAILURES``       ``max_failures``                  ``10``
``OTEL_PYTHON_TRACEDFUTURE_EXPORT_TIMEOUT``     ``export_timeout`` (seconds)      ``10``
``OTEL_PYTHON_TRACEDFUTURE_INCLUDE_MODULES``    ``include_modules`` (commas)      ``myapp,lib.db``
``OTEL_PYTHON_TRACEDFUTURE_EXCLUDE_MODULES``    ``exclude_modules`` (commas)      ``myapp.health``
``OTEL_PYTHON_TRACEDFUTURE_INCLUDE_NAMES``      ``include_names`` (commas)        ``worker-*``
``OTEL_PYTHON_TRACEDFUTURE_EXCLUDE_NAMES``      ``exclude_names`` (commas)        ``poll-*``
``OTEL_PYTHON_TRACEDFUTURE_APP_MODULES``        ``app_modules`` (commas)          ``myservice``
==============================================  ================================  ===============

These are the options of :class:`tracedfuture.Options`, read by
:func:`tracedfuture.options.from_environment`: the same names, checks and messages
as ``install()``, ``tracedfuture run`` and the ``TRACEDFUTURE_*`` variables. An
unset or empty variable leaves the option's default. A bad value raises
``ValueError`` naming the variable, its value and what it should be (under
``opentelemetry-instrument`` it is logged as "Instrumenting of tracedfuture
failed" and the program runs untraced). Used by hand, keyword arguments
override the environment:

>>> from tracedfuture.instrumentation import TracedFutureInstrumentor
>>> TracedFutureInstrumentor().instrument(tail=True, slow=0.25)  # doctest: +SKIP
>>> TracedFutureInstrumentor().uninstrument()  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

try:
    # The module starts with "# type: ignore": mypy sees none of its names.
    from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined,unused-ignore]
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    _msg = "tracedfuture.instrumentation needs opentelemetry-instrumentation: pip install 'tracedfuture[otel]'"
    raise ImportError(_msg, name=exc.name) from exc

from ._install import Installation, install
from .options import Options, from_environment

__all__ = ["ENV_PREFIX", "TracedFutureInstrumentor", "options_from_env"]

ENV_PREFIX = "OTEL_PYTHON_TRACEDFUTURE_"


def options_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The :func:`tracedfuture.install` options set by ``OTEL_PYTHON_TRACEDFUTURE_*`` variables.

    >>> options_from_env({"OTEL_PYTHON_TRACEDFUTURE_TAIL": "true", "OTEL_PYTHON_TRACEDFUTURE_SLOW": "0.5"})
    {'tail': True, 'slow': 0.5}

    A variable with this prefix that is not listed in the module docs is an
    error too, so that a typo does not go unnoticed.
    """
    return from_environment(environ, ENV_PREFIX)


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
        from_env = options_from_env()  # an error here names its variable
        Options.parse(kwargs)  # and here a keyword argument, checked alone
        self._installation = install(exporters=[OTelExporter(provider)], **{**from_env, **kwargs})

    def _uninstrument(self, **kwargs: Any) -> None:
        installation, self._installation = self._installation, None
        if installation is not None:
            installation.uninstall()
