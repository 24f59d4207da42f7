"""The safe fetcher, against a real HTTP server on 127.0.0.1 (private: the tests allow it)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from memory.fetch import FetchError, FetchLimits, fetch_page, is_private
from tests.memory.webserver import ARTICLE_SENTENCE, web_server

LOCAL = FetchLimits(allow_private=True, timeout_s=10)


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    with web_server() as url:
        yield url


def test_main_text_without_the_menus_and_footer(site: str) -> None:
    page = fetch_page(f"{site}/article", LOCAL)
    assert ARTICLE_SENTENCE in page.text
    assert page.title == "The Lighthouse"
    assert "About us" not in page.text and "All rights reserved" not in page.text


def test_redirects_are_followed_and_plain_text_kept(site: str) -> None:
    assert ARTICLE_SENTENCE in fetch_page(f"{site}/moved", LOCAL).text
    assert fetch_page(f"{site}/moved", LOCAL).url == f"{site}/article"
    assert fetch_page(f"{site}/notes.txt", LOCAL).text == "Buy milk and eggs."


def test_a_redirect_loop_is_cut_at_the_limit(site: str) -> None:
    with pytest.raises(FetchError, match="redirects more than 3 times"):
        fetch_page(f"{site}/loop", FetchLimits(allow_private=True, max_redirects=3))


def test_size_and_time_limits(site: str) -> None:
    with pytest.raises(FetchError, match="larger than the 0.1 MB limit"):
        fetch_page(f"{site}/big", FetchLimits(allow_private=True, max_bytes=100_000))
    with pytest.raises(FetchError, match="longer than 1 s"):
        fetch_page(f"{site}/slow", FetchLimits(allow_private=True, timeout_s=1))


def test_errors_and_other_content(site: str) -> None:
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch_page(f"{site}/missing", LOCAL)
    with pytest.raises(FetchError, match=r"not a web page \(it is image/png\)"):
        fetch_page(f"{site}/image.png", LOCAL)
    with pytest.raises(FetchError, match="a PDF document") as pdf:
        fetch_page(f"{site}/lease.pdf", LOCAL)
    assert pdf.value.fix == "download it and send me the file"
    with pytest.raises(FetchError, match="not an http"):
        fetch_page("file:///etc/passwd", LOCAL)
    with pytest.raises(FetchError, match="could not be found"):
        fetch_page("http://no-such-host.invalid/", LOCAL)


# -- the private-address rule ------------------------------------------------------------------
def test_private_addresses_are_refused_by_default(site: str) -> None:
    with pytest.raises(FetchError, match=r"private or local address \(127\.0\.0\.1\)"):
        fetch_page(f"{site}/article")
    port = site.rsplit(":", 1)[1]
    # By the address the name resolves to, not by how the link is written.
    with pytest.raises(FetchError, match="private or local address"):
        fetch_page(f"http://localhost:{port}/article")


@pytest.mark.parametrize(
    "address",
    [
        "10.1.2.3",
        "192.168.0.1",
        "172.16.5.4",
        "127.0.0.1",
        "169.254.169.254",
        "::1",
        "fe80::1",
        "::ffff:127.0.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "fc00::1",
    ],
)
def test_what_counts_as_private(address: str) -> None:
    assert is_private(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert not is_private(ipaddress.ip_address(address))


def only_127_0_0_2(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """A stand-in rule under which the test server (127.0.0.1) is public and 127.0.0.2 private."""
    return str(ip) == "127.0.0.2"


def test_every_redirect_hop_is_checked(site: str) -> None:
    rule = FetchLimits(blocked=only_127_0_0_2, timeout_s=5)
    assert ARTICLE_SENTENCE in fetch_page(f"{site}/moved", rule).text
    target = quote("http://127.0.0.2:9/secret", safe="")
    with pytest.raises(FetchError, match=r"private or local address \(127\.0\.0\.2\)"):
        fetch_page(f"{site}/away?to={target}", rule)


def test_every_resolved_address_is_checked(site: str) -> None:
    port = int(site.rsplit(":", 1)[1])
    names = {"shop.test": ["127.0.0.1"], "split.test": ["127.0.0.1", "127.0.0.2"]}
    rule = FetchLimits(blocked=only_127_0_0_2, resolve=lambda host, _port: names[host])
    assert ARTICLE_SENTENCE in fetch_page(f"http://shop.test:{port}/article", rule).text
    with pytest.raises(FetchError, match=r"split\.test is a private or local address"):
        fetch_page(f"http://split.test:{port}/article", rule)
