"""Stand-in workers for the watchdog's tests, speaking HTTP on 127.0.0.1.

Usage: standin.py MODE PORT [SECONDS]
  slow-start  answers OSCAR's isAlive only after SECONDS (stock OSCAR on Tomcat takes minutes)
  garbage     answers 200 with a body that is not SOAP
  http500     answers 500 with OSCAR's isAlive envelope (a status is not an answer)
  wrong-soap  answers 200 with a well-formed isAliveResponse whose value is not "alive"
  gc-pause    answers for SECONDS, then stops answering while burning CPU, as a JVM does in a
              long stop-the-world collection (the test writes its hsperfdata counters)
  documents   answers isAlive; a POST under /document/ is read in chunks and answered with its
              length and SHA-256; GET /document/big?mb=N streams N MiB of a fixed pattern (the
              proxy's streaming tests: the EMR's own documents come with the clinical API)
"""

import hashlib
import http.server
import sys
import time
import urllib.parse

PATTERN = bytes(range(256)) * 256  # 64 KiB

ALIVE = (
    '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
    '<ns2:isAliveResponse xmlns:ns2="http://ws.oscarehr.org/"><return>{}</return>'
    "</ns2:isAliveResponse></soap:Body></soap:Envelope>"
)

MODE, PORT = sys.argv[1], int(sys.argv[2])
DELAY = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
STARTED = time.monotonic()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 (the stdlib's name)
        url = urllib.parse.urlparse(self.path)
        if MODE != "documents" or not url.path.endswith("/document/big"):
            self.send_error(404)
            return
        mb = int(urllib.parse.parse_qs(url.query).get("mb", ["1"])[0])
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(mb * 1024 * 1024))
        self.end_headers()
        for _ in range(mb * 16):
            self.wfile.write(PATTERN)

    def do_POST(self):  # noqa: N802 (the stdlib's name)
        length = int(self.headers.get("Content-Length", "0"))
        if MODE == "documents" and "/document/" in self.path:
            digest, left = hashlib.sha256(), length
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 16))
                if not chunk:
                    break
                digest.update(chunk)
                left -= len(chunk)
            data = '{{"bytes": {}, "sha256": "{}"}}'.format(length - left, digest.hexdigest()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.rfile.read(length)
        status, body = 200, ALIVE.format("alive")
        if MODE == "slow-start" and time.monotonic() - STARTED < DELAY:
            status, body = 503, "starting"
        elif MODE == "garbage":
            body = "\x00\x01 definitely not soap <<<"
        elif MODE == "http500":
            status = 500
        elif MODE == "wrong-soap":
            body = ALIVE.format("dead")
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/xml;charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def burn_after_delay():
    time.sleep(DELAY)
    # Every thread stops while the "collector" runs: spin without releasing the interpreter.
    while True:
        sum(range(10000))


if __name__ == "__main__":
    if MODE == "gc-pause":
        import threading

        threading.Thread(target=burn_after_delay, daemon=True).start()
        sys.setswitchinterval(1000)  # once burning, the server thread never runs again
    http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
