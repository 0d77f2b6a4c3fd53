"""The SSRF guard. Refusals happen before any connection, so hostile addresses are never
contacted; the only live requests go to a server of the test's own on 127.0.0.1.

DNS is the edge faked here (a dict of answers); one test uses the system resolver.
"""

from __future__ import annotations

import http.server
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from core import url_guard
from core.url_guard import UrlGuard, UrlRefused

# As in the test stack: loopback servers of the tests are reachable, nothing else private.
ALLOW = ["127.0.0.1"]

HOSTILE = [
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
    ("http://[::1]:8080/", "::1 is a loopback address"),
    ("http://0x7f000001/", "0x7f000001 is an IP address in a non-canonical form (it means 127"),
    ("http://2130706433/", "non-canonical form (it means 127.0.0.1)"),
    ("http://0177.0.0.1/", "non-canonical form (it means 127.0.0.1)"),
    ("http://127.1/", "non-canonical form (it means 127.0.0.1)"),
    ("http://0x0a.0.0.1/", "non-canonical form (it means 10.0.0.1)"),
    ("http://localhost:8080/", "localhost is this machine"),
    ("http://LocalHost./", "localhost is this machine"),
    ("http://admin.localhost/", "admin.localhost is this machine"),
    ("http://127.0.0.2/", "127.0.0.2 is a loopback address"),
    ("http://10.0.0.1/", "10.0.0.1 is a private address"),
    ("http://172.16.5.4/", "172.16.5.4 is a private address"),
    ("http://192.168.1.1/", "192.168.1.1 is a private address"),
    ("http://100.64.0.1/", "carrier-grade NAT"),
    ("http://224.0.0.1/", "224.0.0.1 is a multicast address"),
    ("http://0.0.0.0:8000/", "0.0.0.0 is the unspecified address"),
    ("http://[::]/", ":: is the unspecified address"),
    ("http://[fe80::1%25eth0]/", "fe80::1 is a link-local address"),
    ("http://[fc00::1]/", "fc00::1 is a private address"),
    ("http://[fec0::1]/", "fec0::1 is a site-local address"),
    ("http://[ff02::1]/", "ff02::1 is a multicast address"),
    ("http://[::ffff:169.254.169.254]/", "IPv4-mapped form of 169.254.169.254, a link-local"),
    ("http://[::ffff:10.0.0.1]/", "IPv4-mapped form of 10.0.0.1, a private address"),
    ("http://[2002:a9fe:a9fe::1]/", "6to4 form of 169.254.169.254"),
    ("http://[64:ff9b::a9fe:a9fe]/", "NAT64 form of 169.254.169.254"),
    ("file:///etc/passwd", "only http and https URLs are allowed, not file://"),
    ("gopher://127.0.0.1:70/_GET%20/", "only http and https URLs are allowed, not gopher://"),
    ("ftp://example.com/a.png", "not ftp://"),
    ("//example.com/a.png", "a URL without a scheme"),
    ("http:///a.png", "the URL has no host"),
    ("http://exa mple.com/", "is not a valid host name"),
    ("http://example.com:99999/", "port 99999 does not exist"),
]


@pytest.mark.parametrize(("url", "reason"), HOSTILE)
def test_hostile_urls_are_refused_without_dns_with_the_reason(url: str, reason: str) -> None:
    def no_dns(host: str, port: int) -> list[str]:
        raise AssertionError(f"{host} should have been refused before any lookup")

    guard = UrlGuard(ALLOW, resolver=no_dns)
    with pytest.raises(UrlRefused) as refused:
        guard.check(url)
    assert reason in str(refused.value)
    assert str(refused.value).endswith(refused.value.reason)


class FakeDns:
    """Answers from a table; counts lookups."""

    def __init__(self, answers: dict[str, Sequence[str]]) -> None:
        self.answers = answers
        self.lookups: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(self.answers[host])


DNS = FakeDns(
    {
        "evil.example": ["10.0.0.7"],
        "metadata.example": ["169.254.169.254"],
        "mixed.example": ["93.184.216.34", "192.168.0.10"],
        "v6.example": ["2606:4700::1111", "::1"],
        "mapped.example": ["::ffff:10.1.2.3"],
        "public.example": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"],
        "images.intranet": ["10.20.30.40"],
    }
)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://evil.example/a.png", "evil.example resolves to a non-public address: 10.0.0.7"),
        ("https://metadata.example/", "169.254.169.254 is a link-local address"),
        ("http://mixed.example/", "192.168.0.10 is a private address"),
        ("http://v6.example/", "::1 is a loopback address"),
        ("http://mapped.example/", "IPv4-mapped form of 10.1.2.3"),
        ("http://nowhere.example/", "nowhere.example could not be resolved"),
    ],
)
def test_names_are_judged_by_every_address_they_resolve_to(url: str, reason: str) -> None:
    with pytest.raises(UrlRefused, match=reason.replace(".", r"\.")):
        UrlGuard(ALLOW, resolver=DNS).check(url)


def test_a_public_name_is_allowed_and_pinned_to_its_checked_addresses() -> None:
    # The decision only: nothing connects to a public address in the tests.
    target, addresses = UrlGuard(ALLOW, resolver=DNS).check("https://public.example/a.png?x=1")
    assert target.host == "public.example"
    assert target.port == 443
    assert target.host_header == "public.example"
    assert [str(a) for a in addresses] == ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111", "2a00:1450:4001::200e"]
)
def test_public_addresses_pass(address: str) -> None:
    assert url_guard.address_refusal(ipaddress.ip_address(address)) is None


def test_the_allow_list_takes_addresses_networks_and_names() -> None:
    guard = UrlGuard(["127.0.0.1", "10.1.0.0/16", "Images.Intranet"], resolver=DNS)
    guard.check("http://127.0.0.1:8080/a.png")
    guard.check("http://10.1.2.3/a.png")
    guard.check("http://images.intranet/a.png")
    with pytest.raises(UrlRefused, match=r"10\.2\.0\.1 is a private address"):
        guard.check("http://10.2.0.1/")
    with pytest.raises(UrlRefused, match=r"127\.0\.0\.2 is a loopback address"):
        guard.check("http://127.0.0.2/")
    # Allowing 127.0.0.1 allows neither other spellings of it nor IPv6 loopback.
    for url in ("http://0x7f000001/", "http://[::1]/", "http://localhost/"):
        with pytest.raises(UrlRefused):
            guard.check(url)


def test_an_empty_allow_list_refuses_loopback() -> None:
    with pytest.raises(UrlRefused, match=r"127\.0\.0\.1 is a loopback address"):
        UrlGuard().check("http://127.0.0.1:8080/")


def test_the_system_resolver_is_asked_and_its_answers_checked() -> None:
    host = socket.gethostname()
    try:
        answers = url_guard.resolve_host(host, 80)
    except OSError:
        pytest.skip(f"this machine's name {host!r} does not resolve")
    if any(url_guard.address_refusal(ipaddress.ip_address(a)) is None for a in answers):
        pytest.skip(f"this machine's name {host!r} resolves to a public address")
    with pytest.raises(UrlRefused, match=f"{host} resolves to a non-public address"):
        UrlGuard().check(f"http://{host}/")


def test_international_names_are_resolved_in_their_ascii_form() -> None:
    dns = FakeDns({"xn--bcher-kva.example": ["93.184.216.34"]})
    target, _ = UrlGuard(resolver=dns).check("https://Bücher.example/a.png")
    assert target.host == "xn--bcher-kva.example"
    assert dns.lookups == ["xn--bcher-kva.example"]


def test_credentials_are_left_out_of_errors() -> None:
    with pytest.raises(UrlRefused) as refused:
        UrlGuard().check("http://user:hunter2@10.0.0.1/")
    assert "hunter2" not in str(refused.value)


def test_submitted_urls_get_a_clear_invalid_request() -> None:
    from core.errors import InvalidRequest
    from core.settings import Settings

    settings = Settings(url_allow_list=[])
    with pytest.raises(InvalidRequest) as refused:
        url_guard.require_safe_url(settings, "http://169.254.169.254/", input="webhook_url")
    assert refused.value.input == "webhook_url"
    assert refused.value.message.startswith("webhook_url: http://169.254.169.254/ refused: ")


# Live requests, all to a server on 127.0.0.1.


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """/to?u=URL redirects there; /hops/N redirects N more times; /host echoes Host;
    /big sends 2 MB; /drip sends a byte every 0.1 s."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = urlsplit(self.path)
            if path.path == "/to":
                self._redirect(parse_qs(path.query)["u"][0])
            elif path.path.startswith("/hops/"):
                left = int(path.path.rsplit("/", 1)[1])
                self._redirect(f"/hops/{left - 1}" if left else "/host")
            elif path.path == "/big":
                self._send(b"x" * 2_000_000)
            elif path.path == "/drip":
                self.send_response(200)
                self.end_headers()
                for _ in range(20):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.1)
            else:
                self._send(self.headers.get("Host", "").encode())

        def do_POST(self) -> None:
            self._redirect("/host")

        def _redirect(self, location: str) -> None:
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _send(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            return

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5, trust_env=False) as made:
        yield made


def _get(client: httpx.Client, guard: UrlGuard, url: str) -> bytes:
    with url_guard.open_stream(client, guard, "GET", url) as response:
        return url_guard.read_limited(response, 100_000, seconds=5)


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("http://10.0.0.1/x.png", "10.0.0.1 is a private address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local"),
        ("http://[::1]:9/", "::1 is a loopback address"),
        ("http://0x7f000001:9/", "non-canonical form"),
        ("http://localhost:9/", "localhost is this machine"),
        ("file:///etc/passwd", "only http and https URLs are allowed, not file://"),
        ("gopher://127.0.0.1:70/", "not gopher://"),
    ],
)
def test_a_redirect_is_checked_like_the_first_url(
    server: str, client: httpx.Client, target: str, reason: str
) -> None:
    start = f"{server}/to?u={target}"
    with pytest.raises(UrlRefused) as refused:
        _get(client, UrlGuard(ALLOW), start)
    message = str(refused.value)
    assert reason in message
    assert f"(a redirect from {start})" in message


def test_at_most_three_redirects(server: str, client: httpx.Client) -> None:
    guard = UrlGuard(ALLOW)
    assert _get(client, guard, f"{server}/hops/2") == server.removeprefix("http://").encode()
    with pytest.raises(UrlRefused, match="more than 3 redirects"):
        _get(client, guard, f"{server}/hops/3")


def test_other_methods_get_the_redirect_itself(server: str, client: httpx.Client) -> None:
    with url_guard.open_stream(client, UrlGuard(ALLOW), "POST", f"{server}/", content=b"{}") as r:
        assert r.status_code == 302


def test_the_checked_address_is_connected_to_with_the_original_host(
    server: str, client: httpx.Client
) -> None:
    port = int(server.rsplit(":", 1)[1])
    dns = FakeDns({"images.example": ["127.0.0.1"]})
    body = _get(client, UrlGuard(ALLOW, resolver=dns), f"http://images.example:{port}/host")
    # The server on 127.0.0.1 answered, and saw the name the URL gave, not the address.
    assert body == f"images.example:{port}".encode()
    # One lookup: a second answer (DNS rebinding) is never asked for.
    assert dns.lookups == ["images.example"]


def test_the_byte_cap_stops_the_download(server: str, client: httpx.Client) -> None:
    with url_guard.open_stream(client, UrlGuard(ALLOW), "GET", f"{server}/big") as response:
        with pytest.raises(url_guard.ResponseTooLarge, match="2000000 bytes, over the 1000"):
            url_guard.read_limited(response, 1000, seconds=5)


def test_a_download_that_drips_is_cut_off(server: str, client: httpx.Client) -> None:
    with url_guard.open_stream(client, UrlGuard(ALLOW), "GET", f"{server}/drip") as response:
        with pytest.raises(url_guard.ResponseTooSlow, match=r"longer than 0\.5 s"):
            url_guard.read_limited(response, 1000, seconds=0.5)
