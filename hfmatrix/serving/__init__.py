"""Serving: a real OpenAI-compatible server process, its HTTP client, a fault-injecting proxy, load figures."""
from __future__ import annotations

import os


def endpoint() -> dict[str, str] | None:
    """--hfm-endpoint (the plugin puts it in the environment, so xdist workers see it): an existing
    deployment to test instead of a server hfmatrix starts."""
    url = os.environ.get("HFMATRIX_SERVE_ENDPOINT", "")
    if not url:
        return None
    return {"url": url, "model": os.environ.get("HFMATRIX_SERVE_MODEL", ""),
            "key_env": os.environ.get("HFMATRIX_SERVE_API_KEY_ENV", "HFMATRIX_SERVE_API_KEY")}
