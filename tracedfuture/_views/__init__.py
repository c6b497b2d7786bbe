"""The viewers of a trace file: tree, stats, html, perfetto, and the model they share."""
