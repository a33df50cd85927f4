#!/usr/bin/env python3
"""A Kafka proxy with TLS and SASL/PLAIN for the integration tests (Python's standard library).

Accepts Kafka connections on --listen and forwards them to --upstream, a plaintext broker that
advertises the proxy's address, so that every connection a client makes (bootstrap, then the
advertised broker) goes through it:

- with --cert and --key it terminates TLS (`security.protocol` ssl or sasl_ssl);
- with --user and --password it serves only clients authenticated with SASL/PLAIN, as a broker
  with `sasl.enabled.mechanisms=PLAIN` does (sasl_plaintext or sasl_ssl):

    client ── ApiVersions ───────────────► forwarded (the broker lists SaslHandshake v0-1 and
                                            SaslAuthenticate v0-2, as Kafka does)
           ── SaslHandshake v1 (PLAIN) ──► answered here
           ── SaslAuthenticate v0/v1 ────► answered here: checked against --user/--password
           ── anything else ─────────────► forwarded once authenticated, else the connection closes

tansu's own `--cert` gave no TLS handshake, and tansu keeps no SASL users across restarts and
refuses to create them with authentication on: this is how `kappa run`'s security settings meet
a real TLS handshake and a real authentication exchange here.

Prints "listening" once it accepts connections.
"""
import argparse
import asyncio
import ssl
import struct

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
ILLEGAL_SASL_STATE, UNSUPPORTED_SASL_MECHANISM, SASL_AUTHENTICATION_FAILED = 34, 33, 58


def string(value: bytes) -> bytes:
    return struct.pack(">h", len(value)) + value


async def frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    return await reader.readexactly(size)


def respond(writer: asyncio.StreamWriter, correlation: int, body: bytes) -> None:
    payload = struct.pack(">i", correlation) + body
    writer.write(struct.pack(">i", len(payload)) + payload)


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="host:port to accept on")
    parser.add_argument("--upstream", required=True, help="host:port of the broker")
    parser.add_argument("--cert", help="TLS: the server certificate (PEM)")
    parser.add_argument("--key", help="TLS: the server key (PEM)")
    parser.add_argument("--user", help="SASL/PLAIN: the one user accepted")
    parser.add_argument("--password", help="SASL/PLAIN: its password")
    args = parser.parse_args()
    context = None
    if args.cert or args.key:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
    sasl = args.user is not None or args.password is not None
    user, password = (args.user or "").encode(), (args.password or "").encode()
    up_host, up_port = args.upstream.rsplit(":", 1)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(up_host, int(up_port))
        except OSError:
            writer.close()
            return
        if not sasl:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
            return
        back = asyncio.ensure_future(pipe(up_reader, writer))
        mechanism_ok = authenticated = False
        try:
            while True:
                request = await frame(reader)
                api_key, version, correlation, client_id = struct.unpack(">hhih", request[:10])
                body = request[10 + max(client_id, 0):]
                if api_key == SASL_HANDSHAKE and not authenticated:
                    (size,) = struct.unpack(">h", body[:2])
                    mechanism_ok = body[2:2 + size] == b"PLAIN"
                    error = 0 if mechanism_ok else UNSUPPORTED_SASL_MECHANISM
                    respond(writer, correlation, struct.pack(">hi", error, 1) + string(b"PLAIN"))
                    await writer.drain()
                    if not mechanism_ok:
                        break
                elif api_key == SASL_AUTHENTICATE and not authenticated:
                    (size,) = struct.unpack(">i", body[:4])
                    # PLAIN: authzid NUL authcid NUL password (RFC 4616).
                    parts = body[4:4 + size].split(b"\0")
                    authenticated = mechanism_ok and len(parts) == 3 and parts[1:] == [user, password]
                    if authenticated:
                        error, message = 0, struct.pack(">h", -1)
                    elif not mechanism_ok:
                        error, message = ILLEGAL_SASL_STATE, string(b"SaslHandshake first")
                    else:
                        error = SASL_AUTHENTICATION_FAILED
                        message = string(b"Authentication failed: invalid username or password")
                    reply = struct.pack(">h", error) + message + struct.pack(">i", 0)
                    if version >= 1:
                        reply += struct.pack(">q", 0)  # session_lifetime_ms: no re-authentication
                    respond(writer, correlation, reply)
                    await writer.drain()
                    if not authenticated:
                        break
                elif authenticated or api_key == API_VERSIONS:
                    up_writer.write(struct.pack(">i", len(request)) + request)
                    await up_writer.drain()
                else:
                    break  # a request before authenticating: a SASL listener drops the connection
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, struct.error):
            pass
        finally:
            up_writer.close()
            writer.close()
            back.cancel()

    host, port = args.listen.rsplit(":", 1)
    server = await asyncio.start_server(handle, host, int(port), ssl=context)
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
