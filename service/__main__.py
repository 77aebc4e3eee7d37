"""``python -m marktrace.service``: the service CLI (serve, keys, audit)."""

from marktrace.service.cli import app

app()
