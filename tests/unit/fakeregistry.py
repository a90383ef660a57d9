"""A Registry API v2 stand-in on 127.0.0.1 (a thread): tags, manifests by tag or digest, DELETE. It checks
the basic-auth header and records every request as (method, path, Accept)."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def digest(n) -> str:
    return "sha256:" + f"{n}" * (64 // len(str(n)))


class FakeRegistry:
    def __init__(self, tags: dict, page: int = 0, delete_status: int = 202, user="lab", password="regsecret"):
        self.tags = dict(tags)           # tag -> digest
        self.page, self.delete_status = page, delete_status
        self.requests, self.deleted = [], []
        self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def manifest(self, d: str) -> dict:
        return {"schemaVersion": 2, "config": {"digest": "sha256:c" + d[8:]},
                "layers": [{"digest": "sha256:base"}, {"digest": "sha256:l" + d[8:]}]}

    def _handler(self):
        reg = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, code, body=b"", headers=()):
                self.send_response(code)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _route(self):
                reg.requests.append((self.command, self.path, self.headers.get("Accept", "")))
                if self.headers.get("Authorization") != reg.auth:
                    return self._send(401)
                if self.path.startswith("/v2/djapp/tags/list"):
                    return self._tags()
                kind, _, ref = self.path.partition("/v2/djapp/manifests/")
                if kind or not ref:
                    return self._send(404)
                if self.command == "DELETE":
                    if reg.delete_status == 202:
                        reg.deleted.append(ref)
                        reg.tags = {t: d for t, d in reg.tags.items() if d != ref}
                    return self._send(reg.delete_status)
                d = reg.tags.get(ref) or (ref if ref in reg.tags.values() else None)
                if not d:
                    return self._send(404)
                return self._send(200, json.dumps(reg.manifest(d)).encode(), [("Docker-Content-Digest", d)])

            def _tags(self):
                names = sorted(reg.tags)
                last = self.path.partition("last=")[2]
                names = [n for n in names if n > last] if last else names
                more = reg.page and len(names) > reg.page
                names = names[:reg.page] if more else names
                link = [("Link", f'</v2/djapp/tags/list?n={reg.page}&last={names[-1]}>; rel="next"')] if more else []
                return self._send(200, json.dumps({"name": "djapp", "tags": names}).encode(), link)

            do_GET = do_HEAD = do_DELETE = _route

        return Handler
