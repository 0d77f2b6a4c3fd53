"""The SSRF guard: every URL a user gives us (images, webhooks) passes here first.

Three layers, because each one alone can be fooled:

1. ``UrlGuard.check_url``, without DNS: http or https only, a host that is a plain name or
   an IP address in canonical form, and an IP address that is public. The API runs this at
   submission, so a bad ``webhook_url`` is a 400 rather than a failure hours later.
2. ``UrlGuard.resolve``: the name is resolved and *every* address it resolves to must be
   public (a name with one private address among public ones is refused, so DNS answers
   cannot be mixed to slip one through).
3. ``open_stream``: the request is sent to the address that was checked, not to the name
   (a second lookup could answer differently: DNS rebinding), with the Host header and the
   TLS server name of the original host; each redirect goes through 1 and 2 again.

The allow-list (setting ``url_allow_list``) names hosts, addresses or networks that may be
reached although they are private: an intranet image server, or loopback in the tests.
"""

from __future__ import annotations

import contextvars
import ipaddress
import re
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from core.errors import InvalidRequest
from core.settings import Settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# host, port -> the addresses the host resolves to, as text.
Resolver = Callable[[str, int], Sequence[str]]

MAX_REDIRECTS = 3
SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}

_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
# NAT64 prefixes: a gateway turns these into IPv4 connections to the last 32 bits.
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
# What the WHATWG URL standard and inet_aton read as an IPv4 address: the last label is a
# decimal, octal (leading 0) or hex (0x) number.
_NUMERIC_LABEL = re.compile(r"(0x[0-9a-f]*|[0-9]+)")
_HOST_NAME = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*")


class UrlRefused(Exception):
    """A URL the guard will not connect to; the message names the URL and the reason."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url} refused: {reason}")
        self.url = url
        self.reason = reason


class ResponseTooSlow(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"the response took longer than {seconds:g} s to download")
        self.seconds = seconds


class ResponseTooLarge(Exception):
    def __init__(self, limit: int, declared: int | None = None) -> None:
        size = f"{declared} bytes" if declared is not None else f"over {limit} bytes"
        super().__init__(f"the response is {size}, over the {limit} byte limit")
        self.limit = limit
        self.declared = declared


def resolve_host(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host``, in its order, no duplicates."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _category(address: Address) -> str | None:
    # Order matters: 127.0.0.1 and 169.254.169.254 are also "private" to ipaddress, and the
    # narrower name is the clearer error.
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (cloud metadata services answer on 169.254.169.254)"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "in the carrier-grade NAT range 100.64.0.0/10"
    if address.is_multicast:
        return "a multicast address"
    if address.is_private:
        return "a private address"
    if address.is_reserved:
        return "a reserved address"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "a site-local address"
    if not address.is_global:
        return "not a public address"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address an IPv6 address carries and would reach, with the form's name."""
    if address.ipv4_mapped is not None:
        return "IPv4-mapped", address.ipv4_mapped
    if address.sixtofour is not None:
        return "6to4", address.sixtofour
    if address.teredo is not None:
        return "Teredo", address.teredo[1]
    for prefix in _NAT64:
        if address in prefix:
            return "NAT64", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_refusal(address: Address) -> str | None:
    """Why no request of ours may go to ``address``; None when it is a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            form, inner = embedded
            reason = _category(inner)
            if reason is not None:
                return f"{address} is the {form} form of {inner}, {reason}"
    reason = _category(address)
    return f"{address} is {reason}" if reason is not None else None


@dataclass(frozen=True, slots=True)
class AllowList:
    """Hosts (exact names) and networks that may be reached although they are private."""

    hosts: frozenset[str]
    networks: tuple[Network, ...]

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        hosts: set[str] = set()
        networks: list[Network] = []
        for entry in entries:
            text = entry.strip().lower().strip("[]")
            if not text:
                continue
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                hosts.add(text.rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def allows_host(self, host: str) -> bool:
        return host in self.hosts

    def allows_address(self, address: Address) -> bool:
        candidates: list[Address] = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)
        return any(
            candidate.version == network.version and candidate in network
            for candidate in candidates
            for network in self.networks
        )


@dataclass(frozen=True, slots=True)
class Target:
    """A URL that passed the static checks."""

    url: httpx.URL
    # Lower case, no brackets, no trailing dot.
    host: str
    port: int
    # Set when the host is an IP address rather than a name.
    literal: Address | None

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = DEFAULT_PORTS[self.url.scheme]
        return host if self.port == default else f"{host}:{self.port}"


def display_url(url: str | httpx.URL) -> str:
    """The URL as errors show it: without user name and password."""
    text = str(url)
    try:
        parsed = httpx.URL(text)
    except (httpx.InvalidURL, TypeError):
        return text[:500]
    if parsed.userinfo:
        return str(parsed.copy_with(username=None, password=None))[:500]
    return text[:500]


def _parse_ip(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def _denoted_ipv4(host: str) -> str | None:
    """The address inet_aton makes of a non-canonical IPv4 form (0x7f000001, 127.1, ...)."""
    try:
        return socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        return None


class UrlGuard:
    """Decides which URLs may be fetched or posted to; see the module docstring."""

    def __init__(self, allow_list: Iterable[str] = (), *, resolver: Resolver = resolve_host):
        self.allow = AllowList.parse(allow_list)
        self._resolver = resolver

    @classmethod
    def from_settings(cls, settings: Settings) -> UrlGuard:
        return cls(settings.url_allow_list)

    def check_url(self, url: str | httpx.URL) -> Target:
        """The static checks: scheme, host syntax, and the address when the host is one.

        No DNS: fast enough for request validation. Raises UrlRefused.
        """
        shown = display_url(url)
        raw = str(url)
        scheme = raw.split(":", 1)[0].lower() if ":" in raw else ""
        if scheme not in SCHEMES:
            what = f"{scheme}://" if scheme else "a URL without a scheme"
            raise UrlRefused(shown, f"only http and https URLs are allowed, not {what}")
        try:
            parsed = httpx.URL(raw)
        except httpx.InvalidURL as error:
            host = _host_of(raw)
            if host is not None and _NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]):
                raise UrlRefused(shown, _non_canonical(host)) from error
            raise UrlRefused(shown, f"not a valid URL ({error})") from error
        # The ASCII form (IDNA for international names) is what DNS and TLS see.
        host = parsed.raw_host.decode("ascii").lower().rstrip(".")
        if not host:
            raise UrlRefused(shown, "the URL has no host")
        port = parsed.port or DEFAULT_PORTS[parsed.scheme]
        if not 0 < port < 65536:
            raise UrlRefused(shown, f"port {port} does not exist")
        literal = _parse_ip(host)
        if literal is None:
            if _NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]):
                raise UrlRefused(shown, _non_canonical(host))
            if not _HOST_NAME.fullmatch(host):
                raise UrlRefused(shown, f"{host!r} is not a valid host name")
            if (host == "localhost" or host.endswith(".localhost")) and not (
                self.allow.allows_host(host)
            ):
                # RFC 6761: these names always mean the machine itself.
                raise UrlRefused(shown, f"{host} is this machine (a loopback name)")
        else:
            reason = self.refusal(literal)
            if reason is not None:
                raise UrlRefused(shown, reason)
        return Target(url=parsed, host=host, port=port, literal=literal)

    def refusal(self, address: Address) -> str | None:
        """Why ``address`` may not be reached; None when it is public or allow-listed."""
        if self.allow.allows_address(address):
            return None
        return address_refusal(address)

    def resolve(self, target: Target) -> list[Address]:
        """The addresses to connect to, every one checked. Raises UrlRefused."""
        shown = display_url(target.url)
        if target.literal is not None:
            return [target.literal]
        try:
            answers = self._resolver(target.host, target.port)
        except OSError as error:
            raise UrlRefused(shown, f"{target.host} could not be resolved ({error})") from error
        addresses = [address for answer in answers if (address := _parse_ip(answer)) is not None]
        if not addresses:
            raise UrlRefused(shown, f"{target.host} has no address")
        if self.allow.allows_host(target.host):
            return addresses
        for address in addresses:
            reason = self.refusal(address)
            if reason is not None:
                raise UrlRefused(shown, f"{target.host} resolves to a non-public address: {reason}")
        return addresses

    def check(self, url: str | httpx.URL) -> tuple[Target, list[Address]]:
        """Static checks and resolution together: what a caller needs before connecting."""
        target = self.check_url(url)
        return target, self.resolve(target)


def _host_of(raw: str) -> str | None:
    authority = raw.split("://", 1)[-1].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    host = authority.rsplit("@", 1)[-1]
    if host.startswith("["):
        return None
    return host.split(":", 1)[0].lower().rstrip(".") or None


def _non_canonical(host: str) -> str:
    denoted = _denoted_ipv4(host)
    meaning = f" (it means {denoted})" if denoted else ""
    return (
        f"{host} is an IP address in a non-canonical form{meaning}; "
        "write IPv4 addresses as four decimal numbers"
    )


def require_safe_url(settings: Settings, url: str, *, input: str) -> None:
    """The static checks for a URL given in a request; InvalidRequest names the field."""
    try:
        UrlGuard.from_settings(settings).check_url(url)
    except UrlRefused as refused:
        raise InvalidRequest(f"{input}: {refused}", input=input) from refused


def _send_pinned(
    client: httpx.Client,
    target: Target,
    addresses: Sequence[Address],
    method: str,
    headers: Mapping[str, str],
    content: bytes | None,
    timeout: httpx.Timeout,
) -> httpx.Response:
    # The request goes to the checked address; Host and the TLS server name (SNI, also used
    # to verify the certificate) stay those of the original host. The request is built by
    # hand rather than with client.build_request so that no cookie from the shared client's
    # jar (set by some other user's server) is ever sent along.
    extensions: dict[str, object] = {"timeout": timeout.as_dict()}
    if target.url.scheme == "https" and target.literal is None:
        extensions["sni_hostname"] = target.host
    for position, address in enumerate(addresses):
        request = httpx.Request(
            method,
            target.url.copy_with(host=str(address)),
            headers={**headers, "Host": target.host_header},
            content=content,
            extensions=extensions,
        )
        try:
            return client.send(request, stream=True, follow_redirects=False)
        except httpx.ConnectError:
            # Nothing was sent yet; the next checked address may answer (dual-stack hosts).
            if position == len(addresses) - 1:
                raise
        except httpx.RemoteProtocolError as error:
            # httpx parses Location even when not following; one it cannot parse ends here.
            if "location header" not in str(error):
                raise
            detail = str(error).split(": ", 1)[-1].rstrip(".")
            raise UrlRefused(
                display_url(target.url), f"it redirects to an invalid URL ({detail})"
            ) from error
    raise AssertionError("unreachable: resolve() never returns an empty list")


@contextmanager
def open_stream(
    client: httpx.Client,
    guard: UrlGuard,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    content: bytes | None = None,
    timeout: float | None = None,
    max_redirects: int = MAX_REDIRECTS,
) -> Iterator[httpx.Response]:
    """Send one request through the guard and yield the streamed response.

    Redirects are followed for GET only, at most ``max_redirects``, each target checked
    like the first; other methods get the 3xx response itself. The client must not follow
    redirects or use a proxy by itself. Raises UrlRefused, or httpx errors.
    """
    request_timeout = httpx.Timeout(timeout) if timeout is not None else client.timeout
    current = url
    for hop in range(max_redirects + 1):
        try:
            target, addresses = guard.check(current)
        except UrlRefused as refused:
            if hop == 0:
                raise
            raise UrlRefused(refused.url, f"{refused.reason} (a redirect from {url})") from None
        response = _send_pinned(
            client, target, addresses, method, headers or {}, content, request_timeout
        )
        location = response.headers.get("Location")
        if method != "GET" or not response.is_redirect or location is None:
            try:
                yield response
            finally:
                response.close()
            return
        response.close()
        try:
            current = str(target.url.join(location))
        except httpx.InvalidURL as error:
            raise UrlRefused(
                display_url(url), f"it redirects to an invalid URL: {error}"
            ) from error
    raise UrlRefused(display_url(url), f"more than {max_redirects} redirects")


# The monotonic time by which the current thread's request must be over (fetch_deadline).
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "url_guard_deadline", default=None
)


@contextmanager
def fetch_deadline(seconds: float) -> Iterator[float]:
    """Every network operation of a client made by ``guarded_client``, in this thread and
    block, ends by ``seconds`` from now: connecting, sending, and each read of the headers
    and the body, so a server that drips a byte at a time cannot stretch it. Past it an
    operation raises httpx's timeout error. Yields the deadline (``time.monotonic``)."""
    deadline = time.monotonic() + seconds
    token = _deadline.set(deadline)
    try:
        yield deadline
    finally:
        _deadline.reset(token)


def _capped(timeout: float | None, late: type[httpcore.TimeoutException]) -> float | None:
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise late("the deadline of the whole request has passed")
    return remaining if timeout is None else min(timeout, remaining)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _capped(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _capped(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        capped = _capped(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, capped))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's own network backend, with each operation's timeout capped by the
    thread's ``fetch_deadline``: httpx applies its read timeout to each read, and takes it
    once per response, so only here can a whole download be bounded."""

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        capped = _capped(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(
            self._inner.connect_tcp(host, port, capped, local_address, socket_options)
        )

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        capped = _capped(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_unix_socket(path, capped, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def guarded_client(timeout: float) -> httpx.Client:
    """The HTTP client for user-given URLs: no redirects followed by itself (open_stream
    checks each), no proxy from the environment, ``timeout`` per operation, and
    ``fetch_deadline`` honoured."""
    transport = httpx.HTTPTransport()
    # httpx takes no network backend of its own; its connection pool asks this attribute
    # for each new connection.
    transport._pool._network_backend = _DeadlineBackend()
    return httpx.Client(transport=transport, timeout=httpx.Timeout(timeout), follow_redirects=False)


def read_limited(response: httpx.Response, max_bytes: int, *, seconds: float) -> bytes:
    """The whole body, refusing as soon as it passes ``max_bytes`` (ResponseTooLarge) or
    takes longer than ``seconds`` (ResponseTooSlow).

    The client's timeouts hold for each read; this bounds the whole, so a server that
    drips a byte at a time cannot hold a worker for hours.
    """
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise ResponseTooLarge(max_bytes, int(declared))
    deadline = time.monotonic() + seconds
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes(65536):
        size += len(chunk)
        if size > max_bytes:
            raise ResponseTooLarge(max_bytes)
        if time.monotonic() > deadline:
            raise ResponseTooSlow(seconds)
        chunks.append(chunk)
    return b"".join(chunks)


def read_excerpt(response: httpx.Response, max_bytes: int, *, seconds: float) -> str:
    """At most ``max_bytes`` of the body as text, read for at most about ``seconds``."""
    deadline = time.monotonic() + seconds
    collected = bytearray()
    for chunk in response.iter_bytes(4096):
        collected.extend(chunk)
        if len(collected) >= max_bytes or time.monotonic() > deadline:
            break
    return bytes(collected[:max_bytes]).decode("utf-8", errors="replace")
