"""A TCP proxy a test can stop and start: a database that goes away and comes back, for real.

Stopping closes the listener and cuts every proxied connection (as a server restart does), so
the client sees refused connects and broken sockets, not a mock's exception.

`ConnectProxy` is an HTTP CONNECT proxy, what `HTTPS_PROXY` names in a deployment whose egress
goes through one (plain, or itself behind TLS): it tunnels to whatever each client asks for,
and remembers what that was.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl

from tests.support.net import free_port


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _open_target(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(*self.target)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await self._open_target(reader, writer)
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        pumps = [
            asyncio.create_task(_pump(reader, up_writer)),
            asyncio.create_task(_pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
                self._tasks.discard(task)
            for each in (writer, up_writer):
                each.transport.abort()
                self._writers.discard(each)


class ConnectProxy(TcpProxy):
    """An HTTP CONNECT proxy on a free port: `http://127.0.0.1:{port}`."""

    def __init__(
        self,
        refuse_with: int | None = None,
        credentials: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__("", 0)
        self._tls = tls  # an https:// proxy: clients speak TLS to it
        self.refuse_with = refuse_with  # an HTTP status to answer every CONNECT with
        # "user:password" the proxy asks for (407 without them), as Basic authentication.
        self._authorization = (
            None
            if credentials is None
            else "Basic " + base64.b64encode(credentials.encode()).decode()
        )
        self.tunnels: list[str] = []  # the host:port of every CONNECT, in order

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, ssl=self._tls
        )

    async def _open_target(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        head = await reader.readuntil(b"\r\n\r\n")
        method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
        if method != "CONNECT":
            raise ValueError(f"not a CONNECT request: {method}")
        lines = head.decode().split("\r\n")[1:]
        headers = {
            name.lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines)
        }
        refusal = self.refuse_with
        if (
            self._authorization is not None
            and headers.get("proxy-authorization") != self._authorization
        ):
            refusal = 407
        if refusal is not None:
            writer.write(f"HTTP/1.1 {refusal} Refused\r\nContent-Length: 0\r\n\r\n".encode())
            writer.close()  # a FIN after the answer, not the reset an abort would send
            await writer.wait_closed()
            raise ValueError(f"CONNECT {target} refused with {refusal}")
        host, _, port = target.rpartition(":")
        upstream = await asyncio.open_connection(host, int(port))
        self.tunnels.append(target)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        return upstream


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
