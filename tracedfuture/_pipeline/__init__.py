"""Between the hot path and the exporters: drain, tail, convert, filter, sinks."""
