"""The control socket of a running process: its server, its client, the live console."""
