"""Bearer-token auth for the endpoints that change state, and keeping the token out of logs.

One token per installation: ``settings.api_token`` when configured, else a random one kept in
``<data_dir>/api-token`` (created with mode 0600 on first use, so ``wearwatch up`` and a
restarted ``wearwatch serve`` agree on it). Reading endpoints need no token; every endpoint
that writes to the log or the registry depends on :func:`require_token`, which compares in
constant time (:func:`secrets.compare_digest`) and answers 401 with ``WWW-Authenticate:
Bearer`` before the endpoint runs, so a refused request changes nothing.

>>> import tempfile
>>> from pathlib import Path
>>> d = Path(tempfile.mkdtemp())
>>> token = load_or_create_token(d)
>>> token == load_or_create_token(d), len(token) >= 32, oct((d / TOKEN_FILE).stat().st_mode & 0o777)
(True, True, '0o600')
>>> load_or_create_token(d, configured="s3cret")
's3cret'
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

TOKEN_FILE = "api-token"

#: Documents the scheme in OpenAPI; the check itself is :func:`require_token` (no auto 403).
bearer = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="The platform's token: `wearwatch up` prints it; `<data_dir>/api-token`.",
)


def load_or_create_token(data_dir: Path, configured: str = "") -> str:
    """The configured token, else the one in ``<data_dir>/api-token`` (created 0600)."""
    if configured:
        return configured
    path = Path(data_dir) / TOKEN_FILE
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        token = ""
    if token:
        return token
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, token.encode("utf-8"))
    finally:
        os.close(fd)
    return token


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


async def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """401 unless the request carries ``Authorization: Bearer <the platform's token>``."""
    if credentials is None:
        raise unauthorized("this endpoint changes state: send Authorization: Bearer <token>")
    expected: str = request.app.state.token
    if not secrets.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise unauthorized("invalid token")


class RedactToken(logging.Filter):
    """Replaces the token in a log record (message and arguments) with ``***``: the dashboard
    takes it as ``/?token=…``, which an access log would otherwise print."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.token:
            return True
        if isinstance(record.msg, str) and self.token in record.msg:
            record.msg = record.msg.replace(self.token, "***")
        if isinstance(record.args, tuple):
            record.args = tuple(
                a.replace(self.token, "***") if isinstance(a, str) else a for a in record.args
            )
        elif isinstance(record.args, dict):
            record.args = {
                k: v.replace(self.token, "***") if isinstance(v, str) else v
                for k, v in record.args.items()
            }
        return True


def redact_logs(
    token: str,
    loggers: tuple[str, ...] = (
        "uvicorn",
        "uvicorn.access",
        "uvicorn.error",
        "fastapi",
        "nicegui",
        "wearwatch",
    ),
) -> RedactToken:
    """Install :class:`RedactToken` on the handlers-bearing loggers a server writes through."""
    redactor = RedactToken(token)
    for name in loggers:
        logger = logging.getLogger(name)
        if redactor not in logger.filters:
            logger.addFilter(redactor)
    return redactor
