"""ClickHouse's HTTP interface in front of ClickHouse's current engine (chdb), for tests.

A real ClickHouse server on this machine is Debian's 18.16 (2018), which the client cannot talk
to; chdb embeds ClickHouse 26.9 but has no network interface. This server is the thin missing
piece: it takes the HTTP requests clickhouse-connect's HTTP transport sends — the statement in
the ``query`` parameter or the body, ``database``, ``param_*`` values for ``{name:Type}``
placeholders, settings as parameters, insert data in the body (chunked, lz4 or zstd) — and runs
each, unchanged, on the engine, answering in the format the statement asks for, with the
headers and error codes of a server. What it adds is only HTTP framing: the SQL, the values'
text encoding and the data bytes are the client's own.
"""

from __future__ import annotations

import json
import os
import re
import threading
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import chdb

#: URL parameters of the HTTP interface that are not settings.
_NOT_SETTINGS = {"query", "query_id", "database", "session_id", "session_timeout", "user"}
#: Settings of the HTTP layer itself (compression, progress headers), meaningless in-process.
_HTTP_ONLY = {
    "enable_http_compression",
    "send_progress_in_http_headers",
    "http_headers_progress_interval_ms",
    "wait_end_of_query",
    "client_protocol_version",
    "compress",
    "decompress",
    "default_format",
}
_FORMAT = re.compile(r"\s+FORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)


class ClickHouseHttp:
    """Serve the engine at ``path`` on ``http://127.0.0.1:<port>`` (a thread)."""

    def __init__(self, path: str) -> None:
        self.path = os.path.realpath(path)  # chdb compares engine paths literally
        # Held open so the engine stays up between requests (each request gets a fresh
        # connection: its own USE and SET, as an HTTP request has).
        self.anchor = chdb.connect(self.path)
        self.lock = threading.Lock()  # one statement at a time, as a session would
        self.statements: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                owner.answer(self)

            def do_POST(self) -> None:
                owner.answer(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.anchor.close()

    def answer(self, request: BaseHTTPRequestHandler) -> None:
        url = urlsplit(request.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        if url.path == "/ping":
            return self._send(request, 200, b"Ok.\n", {})
        body = _body(request)
        content_type = request.headers.get("Content-Type", "")
        if content_type.startswith("application/x-www-form-urlencoded"):
            params |= dict(parse_qsl(body.decode(), keep_blank_values=True))
            body = b""
        elif content_type.startswith("multipart/form-data"):  # large bind parameters
            params |= _form_fields(content_type, body)
            body = b""
        sql = params.get("query", "")
        data = b""
        if sql:
            data = body
        else:
            sql, body = body.decode(), b""
        values = {k.removeprefix("param_"): v for k, v in params.items() if k.startswith("param_")}
        settings = {
            k: v
            for k, v in params.items()
            if k not in _NOT_SETTINGS and k not in _HTTP_ONLY and not k.startswith("param_")
        }
        match = _FORMAT.search(sql)
        fmt = match.group(1) if match else params.get("default_format", "TabSeparated")
        statement = sql[: match.start()] if match else sql
        with self.lock:
            self.statements.append(sql.strip())
            try:
                out, written = self._run(
                    statement, fmt, data, params.get("database"), settings, values
                )
            except Exception as exc:  # the engine's error, as a server reports it
                text = str(exc)
                code = re.search(r"Code: (\d+)", text)
                headers = {"X-ClickHouse-Exception-Code": code.group(1) if code else "1"}
                return self._send(request, 500, text.encode(), headers)
        summary = {"read_rows": "0", "written_rows": str(written), "result_rows": "0"}
        headers = {
            "X-ClickHouse-Summary": json.dumps(summary),
            "X-ClickHouse-Format": fmt,
            "X-ClickHouse-Timezone": "UTC",
            "X-ClickHouse-Query-Id": params.get("query_id", ""),
        }
        self._send(request, 200, out, headers)

    def _run(
        self,
        statement: str,
        fmt: str,
        data: bytes,
        database: str | None,
        settings: dict[str, str],
        values: dict[str, str],
    ) -> tuple[bytes, int]:
        conn = chdb.connect(self.path)
        try:
            if database:
                conn.query(f"USE {database}")
            for name, value in settings.items():
                literal = value if re.fullmatch(r"-?\d+(\.\d+)?", value) else _quoted(value)
                conn.query(f"SET {name} = {literal}")
            if statement.lstrip().upper().startswith("INSERT") and data:
                with conn.send_insert(statement, fmt) as inserter:
                    inserter.append(data)
                    result = inserter.finish()
                return b"", result.rows_written
            out = conn.query(statement, fmt, params=values)
            return (out.bytes() if hasattr(out, "bytes") else bytes(out)), 0
        finally:
            conn.close()

    @staticmethod
    def _send(
        request: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]
    ) -> None:
        request.send_response(status)
        for name, value in headers.items():
            request.send_header(name, value)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _form_fields(content_type: str, body: bytes) -> dict[str, str]:
    """The text fields of a ``multipart/form-data`` body."""
    message = BytesParser(policy=policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    return {
        part.get_param("name", header="content-disposition"): part.get_content()
        for part in message.iter_parts()
    }


def _body(request: BaseHTTPRequestHandler) -> bytes:
    """The request body: de-chunked and decompressed."""
    if request.headers.get("Transfer-Encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int(request.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                request.rfile.readline()
                break
            parts.append(request.rfile.read(size))
            request.rfile.readline()
        body = b"".join(parts)
    else:
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
    encoding = request.headers.get("Content-Encoding", "").lower()
    if encoding == "lz4":
        import lz4.frame

        body = lz4.frame.decompress(body)
    elif encoding == "zstd":
        import zstandard

        body = zstandard.ZstdDecompressor().decompressobj().decompress(body)
    elif encoding in ("gzip", "deflate", "br"):
        raise ValueError(f"Content-Encoding {encoding}: not implemented here")
    return body
