#!/usr/bin/env python3
"""A TLS-terminating TCP proxy for the integration tests (Python's standard library only).

Accepts TLS connections on --listen with --cert/--key and forwards the plain bytes to --upstream.
The tests put it in front of a plaintext tansu broker that advertises the proxy's address, so
that every Kafka connection (bootstrap, then the advertised broker) is TLS: what `kappa run`'s
`[source.kafka.properties]` security settings must pass through to librdkafka.

Prints "listening" once it accepts connections.
"""
import argparse
import asyncio
import ssl


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
    parser.add_argument("--listen", required=True, help="host:port to accept TLS on")
    parser.add_argument("--upstream", required=True, help="host:port to forward to")
    parser.add_argument("--cert", required=True, help="server certificate (PEM)")
    parser.add_argument("--key", required=True, help="server key (PEM)")
    args = parser.parse_args()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    up_host, up_port = args.upstream.rsplit(":", 1)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(up_host, int(up_port))
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    host, port = args.listen.rsplit(":", 1)
    server = await asyncio.start_server(handle, host, int(port), ssl=context)
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
