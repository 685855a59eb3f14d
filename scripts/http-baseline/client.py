"""Load for scripts/compare-http: posts 6-sample windows of synthetic hosts to the HTTP scoring
service over one keep-alive connection for SECS seconds; prints the windows scored.

    python client.py PORT SECS
"""

import http.client
import json
import math
import sys
import time

WINDOW, METRICS = 6, 7


def window(host: int, step: int) -> bytes:
    rows = [[50 + 10 * math.sin((step + r + host) / 7 + m) for m in range(METRICS)] for r in range(WINDOW)]
    return json.dumps({"host": f"host-{host}", "rows": rows}).encode()


def main() -> None:
    port, secs = int(sys.argv[1]), float(sys.argv[2])
    bodies = [window(h, s) for h in range(100) for s in range(0, 60, WINDOW)]
    connection = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"Content-Type": "application/json"}
    scored, deadline = 0, time.monotonic() + secs
    while time.monotonic() < deadline:
        connection.request("POST", "/score", body=bodies[scored % len(bodies)], headers=headers)
        response = connection.getresponse()
        if response.status != 200:
            raise SystemExit(f"the service answered {response.status}: {response.read()[:200]!r}")
        json.loads(response.read())
        scored += 1
    print(scored)


if __name__ == "__main__":
    main()
