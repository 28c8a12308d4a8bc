"""Offline machines go offline at once: when the Hugging Face Hub cannot be reached, a script sets HF_HUB_OFFLINE=1
before the Hub's libraries load, as a user would.

Without it, every file asked of an unreachable Hub is retried five times by huggingface_hub (1 + 2 + 4 + 8 + 8 s)
with a warning line per try, before the cached copy is used or the suite's one-line error is printed: a first run
on a machine without internet waited 33 s and printed 10 third-party lines. Offline mode gives the same outcome
(cached files load, others fail) without the wait.

The rule, stated once: the Hub counts as unreachable when its host (HF_ENDPOINT, or huggingface.co) does not resolve
or refuses a TCP connection within PROBE_TIMEOUT_S. Nothing is decided when the user set HF_HUB_OFFLINE or
TRANSFORMERS_OFFLINE (theirs holds), or when a proxy is configured (the proxy, not this machine, reaches the Hub).
"""

from __future__ import annotations

import os
import socket
import sys
from urllib.parse import urlsplit

PROBE_TIMEOUT_S = 3.0
DEFAULT_ENDPOINT = "https://huggingface.co"
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
HUB_LIBRARIES = ("huggingface_hub", "transformers", "datasets")


def hub_reachable(endpoint: str) -> bool:
    """Whether a TCP connection to the endpoint's host and port opens within PROBE_TIMEOUT_S."""
    parts = urlsplit(endpoint)
    port = parts.port or (80 if parts.scheme == "http" else 443)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=PROBE_TIMEOUT_S):
            return True
    except (OSError, ValueError):  # no such host, refused, unreachable network, timed out
        return False


def go_offline_if_hub_unreachable() -> bool:
    """Set HF_HUB_OFFLINE=1 in this process's environment (children inherit it) when the Hub is unreachable; True if
    it did. The Hub's libraries read the variable once, when imported: where one is loaded already (a notebook, a
    test calling a script's main) nothing is decided, and the libraries' own retries hold."""
    if any(name in sys.modules for name in HUB_LIBRARIES):
        return False
    if any(name in os.environ for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", *PROXY_VARIABLES)):
        return False
    if hub_reachable(os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT):
        return False
    os.environ["HF_HUB_OFFLINE"] = "1"
    return True
