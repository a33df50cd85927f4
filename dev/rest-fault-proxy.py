#!/usr/bin/env python3
"""An HTTP proxy in front of an Iceberg REST catalog that loses the responses of commits the
catalog applied (Python's standard library), for the integration tests.

Forwards every request on --listen to --upstream unchanged. A table commit is a POST to
`.../namespaces/<ns>/tables/<table>` (creating a table is a POST to `.../tables`, not
counted). The commits numbered in --lose (1-based, in the order they reach the proxy) are
forwarded, and when the catalog answered 200 (it applied the commit) the client gets no answer
for it: with --how close the connection is closed without a response (a crash or a network
failure after the server committed), with --how 502 or --how 504 it gets that status (a gateway
that lost the upstream's answer). Either way the client cannot know that the commit landed.

With --expire-tokens-every N, bearer tokens expire: after every N requests that carried one,
every token seen so far is expired, and a request carrying an expired token is answered 401
(NotAuthorizedException) without reaching the catalog, as a catalog answers a token past its
lifetime. Token requests (`/v1/oauth/tokens`) go through, so a client that asks for a new token
carries on; a token the catalog issues is valid from then on even when it is the same string as
one expired before (SeaweedFS's tokens are JWTs stamped to the second: two issued within one
second are identical).

Each lost response is appended to --log as a JSON line {"commit": n, "path": ..., "status": 200,
"how": ...}, each refused expired token as {"expired": path}, so that a test sees from the proxy,
not from the client, what happened. Prints "listening" once it accepts connections.
"""
import argparse
import http.client
import http.server
import json
import re
import threading
import urllib.parse

COMMIT = re.compile(r"^/v1/(.+/)?namespaces/[^/]+/tables/[^/]+/?$")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-authorization", "proxy-authenticate", "content-length", "host"}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--lose", default="", help="commit numbers whose responses are lost, e.g. 2,3,5")
    parser.add_argument("--how", default="close", help="close | 502 | 504, or one per --lose entry: close,502,close")
    parser.add_argument("--expire-tokens-every", type=int, default=0)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    lose = [int(n) for n in args.lose.split(",") if n]
    hows = args.how.split(",")
    how_of = {n: hows[i] if i < len(hows) else hows[-1] for i, n in enumerate(lose)}
    upstream = urllib.parse.urlsplit(args.upstream)
    state = {"commits": 0, "authorized": 0, "seen": set(), "expired": set()}
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_):
            pass

        def expired(self):
            """Whether the request carries a token this proxy expired (and counts it)."""
            token = self.headers.get("Authorization")
            if not token or not args.expire_tokens_every:
                return False
            with lock:
                if token in state["expired"]:
                    return True
                state["seen"].add(token)
                state["authorized"] += 1
                if state["authorized"] % args.expire_tokens_every == 0:
                    state["expired"] |= state["seen"]
                    state["seen"] = set()
            return False

        def forward(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            if self.expired():
                with open(args.log, "a") as log:
                    log.write(json.dumps({"expired": self.path}) + "\n")
                payload = json.dumps({"error": {"message": "the token expired",
                                                "type": "NotAuthorizedException",
                                                "code": 401}}).encode()
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            commit = None
            if self.command == "POST" and COMMIT.match(urllib.parse.urlsplit(self.path).path):
                with lock:
                    state["commits"] += 1
                    commit = state["commits"]
            conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=120)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            conn.request(self.command, self.path, body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            conn.close()
            if response.status == 200 and self.path.endswith("/oauth/tokens"):
                try:
                    issued = json.loads(payload).get("access_token")
                except ValueError:
                    issued = None
                if issued:
                    with lock:
                        state["expired"].discard(f"Bearer {issued}")
            if commit in how_of and response.status == 200:
                how = how_of[commit]
                with open(args.log, "a") as log:
                    log.write(json.dumps({"commit": commit, "path": self.path,
                                          "status": response.status, "how": how}) + "\n")
                if how == "close":
                    self.close_connection = True
                    self.connection.close()
                    return
                self.send_response(int(how))
                self.send_header("Content-Length", "0")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                return
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in HOP_BY_HOP:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = forward

    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.listen), Handler)
    print("listening", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
