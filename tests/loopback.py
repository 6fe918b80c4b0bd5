"""A real HTTP server on 127.0.0.1 standing in for a Salesforce-style CRM and a Slack
webhook: it records every request, can answer scripted failures first, and upserts CRM
records by external id."""

import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

UPSERT_SUFFIX = "/composite/sobjects/Account/External_Id__c"


@dataclass
class FakeServer:
    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    # Scripted (status, headers) answers served, in order, before the normal behaviour.
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    applied: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, method: str, path: str, headers: dict[str, str], body: Any) -> tuple[int, dict[str, str], Any]:
        with self.lock:
            self.requests.append({"method": method, "path": path, "headers": headers, "body": body})
            if self.script:
                status, extra = self.script.pop(0)
                return status, extra, {"error": status}
            if path.endswith(UPSERT_SUFFIX):
                if method != "PATCH":
                    return 405, {}, [{"errorCode": "METHOD_NOT_ALLOWED"}]
                results = []
                for rec in body["records"]:
                    self.accounts[rec["External_Id__c"]] = rec
                    self.applied[rec["External_Id__c"]] += 1
                    results.append({"id": rec["External_Id__c"], "success": True, "errors": []})
                return 200, {}, results
            return 200, {}, "ok"


@contextmanager
def serve() -> Iterator[FakeServer]:
    state = FakeServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status, extra, reply = state.handle(self.command, self.path, dict(self.headers), json.loads(raw))
            out = json.dumps(reply).encode()
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **extra}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        do_PATCH = do_POST

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
