"""A real HTTP server on 127.0.0.1 that records JSON requests and can fail on purpose."""

import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Recorder:
    def __init__(self):
        self.requests: list[dict] = []
        self.fail_next: list[int] = []  # statuses to answer before behaving normally
        self.lock = threading.Lock()


@contextmanager
def recording_server():
    recorder = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"null")
            with recorder.lock:
                status = recorder.fail_next.pop(0) if recorder.fail_next else 200
                if status == 200:
                    recorder.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body})
            records = body.get("records", []) if isinstance(body, dict) else []
            reply = json.dumps([{"id": r.get("External_Id__c"), "success": True, "errors": []} for r in records] or "ok").encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        do_POST = do_PATCH = _handle

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    recorder.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()
