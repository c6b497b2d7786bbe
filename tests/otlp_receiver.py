"""A tiny OTLP/HTTP trace receiver for tests: what a collector would get, decoded.

>>> with OTLPReceiver() as receiver:  # doctest: +SKIP
...     exporter = OTLPSpanExporter(endpoint=receiver.endpoint)
...     ...
...     receiver.spans()

It accepts ``POST /v1/traces`` with a protobuf ``ExportTraceServiceRequest``
(plain, gzip or deflate), keeps it, and answers like a collector. Anything else
gets 404 or 415, so an exporter sending the wrong thing fails visibly.
"""

from __future__ import annotations

import gzip
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

__all__ = ["OTLPReceiver"]


class OTLPReceiver:
    """An OTLP/HTTP receiver on 127.0.0.1 and an ephemeral port, in a thread."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.errors: list[str] = []
        self._received = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="otlp-receiver", daemon=True
        )

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1/traces"

    def __enter__(self) -> OTLPReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def spans(self) -> list[Span]:
        """Every span received so far, in the order received."""
        with self._received:
            return self._spans()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Span]:
        """The spans, once at least ``count`` have arrived (``TimeoutError`` after ``timeout``)."""
        with self._received:
            if not self._received.wait_for(lambda: len(self._spans()) >= count, timeout):
                msg = f"the receiver got {len(self._spans())} span(s) in {timeout}s, expected {count}"
                raise TimeoutError(msg)
            return self._spans()

    def _spans(self) -> list[Span]:
        return [
            span
            for request in self.requests
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                if self.path != "/v1/traces":
                    self._answer(404, b"")
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                if self.headers.get("Content-Type") != "application/x-protobuf":
                    receiver.errors.append(f"unexpected Content-Type {self.headers.get('Content-Type')!r}")
                    self._answer(415, b"")
                    return
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                with receiver._received:
                    receiver.requests.append(request)
                    receiver._received.notify_all()
                self._answer(200, ExportTraceServiceResponse().SerializeToString())

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        return Handler
