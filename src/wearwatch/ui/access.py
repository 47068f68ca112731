"""Who may press the dashboard's buttons: the holder of the API's bearer token.

Reading the dashboard needs nothing; a control (twin command, acknowledge) needs the token. A
user brings it once, in the page URL (``/?token=…``, as ``wearwatch up`` prints it) or in the
token field; the dashboard keeps only a keyed digest of it in the user's storage — never the
token itself — and drops it from the address bar. The check compares digests in constant time
against the running platform's token, so a changed token locks old sessions out.

The server's logs never show the token: ``wearwatch serve`` redacts it from every log line
(:func:`wearwatch.api.auth.redact_logs`), the access log's ``GET /?token=…`` included.

>>> gate = TokenGate("s3cret")
>>> store = {}
>>> gate.accept(store, "wrong"), gate.allowed(store)
(False, False)
>>> gate.accept(store, "s3cret"), gate.allowed(store), "s3cret" in str(store)
(True, True, False)
>>> TokenGate("other").allowed(store)
False
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import MutableMapping
from typing import Any

#: The key under which a user's storage keeps the token's digest.
STORAGE_KEY = "token_digest"
#: Why a control is disabled, shown next to it.
LOCKED = "read-only: open the dashboard with ?token=… or enter the API token"


class TokenGate:
    """Checks a presented token and remembers a user who presented the right one."""

    def __init__(self, token: str) -> None:
        self._digest = self.digest(token) if token else ""

    @staticmethod
    def digest(token: str) -> str:
        """A keyed digest of ``token``: what the user's storage keeps instead of it."""
        return hmac.new(b"wearwatch-dashboard", token.encode(), hashlib.sha256).hexdigest()

    def accept(self, store: MutableMapping[str, Any], token: str) -> bool:
        """Remember ``token`` in ``store`` if it is the platform's; True if it was."""
        ok = bool(self._digest) and hmac.compare_digest(self.digest(token), self._digest)
        if ok:
            store[STORAGE_KEY] = self._digest
        return ok

    def allowed(self, store: MutableMapping[str, Any]) -> bool:
        """True if ``store`` holds the digest of the platform's current token."""
        held = store.get(STORAGE_KEY, "")
        return (
            bool(self._digest) and isinstance(held, str) and hmac.compare_digest(held, self._digest)
        )

    def forget(self, store: MutableMapping[str, Any]) -> None:
        store.pop(STORAGE_KEY, None)

    def storage_secret(self) -> str:
        """The secret that signs the session cookie, derived from the token (a restart keeps
        sessions; a new token ends them)."""
        return hmac.new(b"wearwatch-session", self._digest.encode(), hashlib.sha256).hexdigest()
