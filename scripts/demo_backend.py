#!/usr/bin/env python3
"""A demo HTTP backend for `scripts/up.sh`: answers every request with JSON naming itself and
echoing the method, path and headers it received, so routing, rewrites and header changes
made by the gateway are visible."""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    name, port = sys.argv[1], int(sys.argv[2])

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            body = json.dumps(
                {"backend": name, "method": self.command, "path": self.path, "headers": dict(self.headers)},
                indent=2,
            ).encode() + b"\n"
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = _answer

        def log_message(self, *args) -> None:  # quiet: the gateway logs requests
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
