"""The web proc of the hello example: answers every GET with a greeting and its identity."""
import http.server
import os

GREETING = os.environ.get("GREETING", "Hello")
INSTANCE = os.environ.get("LAIN_INSTANCE_NO", "?")
RELEASE = os.environ.get("LAIN_APP_RELEASE_VERSION", "?")


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok\n" if self.path == "/healthz" else (
            f"{GREETING}: instance {INSTANCE} of {os.environ.get('LAIN_APPNAME')}, "
            f"release {RELEASE}\n".encode())
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print(f"{self.address_string()} {fmt % args}", flush=True)


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "80"))
    print(f"instance {INSTANCE} listening on port {port}", flush=True)
    http.server.ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()
