"""A safe fetch of a web page: HTTP(S) GET with size, time and redirect limits, main text out.

Used for links people send and by the agent's ``fetch_url`` tool, with the same rules:

- only ``http`` and ``https``; at most ``max_redirects`` redirects, each followed by hand so
  that every hop is checked;
- the host is resolved here and every address it resolves to must be public: private,
  loopback, link-local, multicast, reserved and unspecified addresses are refused (a link to
  the router's admin page, or to a cloud metadata service, is not fetched) unless
  ``allow_private`` is set. The connection then goes to the address that was checked (the
  host name still goes in ``Host`` and in TLS's SNI and certificate check), so a second DNS
  answer cannot swap in a private address between the check and the connection;
- the body is read up to ``max_bytes`` and the whole fetch must end within ``timeout_s``.

The page's main text (no menus, footers, comments) comes from trafilatura; plain text is
taken as it is. Whatever the page says is data for the caller, never instructions.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from memory.errors import FamiliarError

USER_AGENT = "Familiar/1.0 (+self-hosted assistant; fetches links its user sent)"
TEXT_TYPES = ("text/html", "application/xhtml+xml", "text/plain", "text/markdown")


IP = ipaddress.IPv4Address | ipaddress.IPv6Address


class FetchError(FamiliarError):
    """A page that could not be fetched; ``str()`` says why, in words for a person."""


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int = 5_000_000
    timeout_s: float = 20.0
    max_redirects: int = 5
    allow_private: bool = False
    # Seams for tests: how a host name is resolved, and which addresses count as private.
    resolve: Callable[[str, int], list[str]] | None = None
    blocked: Callable[[IP], bool] | None = None


@dataclass(frozen=True)
class Page:
    url: str  # where the text came from, after redirects
    title: str
    text: str
    content_type: str
    # A PDF's bytes, when the caller takes documents (``accept_pdf``); ``text`` is then empty.
    pdf: bytes | None = None


def fetch_page(url: str, limits: FetchLimits = FetchLimits(), *, accept_pdf: bool = False) -> Page:
    """Fetch ``url`` and return its main text; raises ``FetchError`` saying what went wrong.
    With ``accept_pdf`` a PDF comes back as bytes (``Page.pdf``) for the document converter."""
    deadline = time.monotonic() + limits.timeout_s
    current = _parse(url)
    with httpx.Client(trust_env=False, follow_redirects=False, verify=True) as client:
        for _hop in range(limits.max_redirects + 1):
            address = _public_address(current, limits)
            status, location, content_type, body = _get(client, current, address, limits, deadline)
            if location is not None:
                current = _parse(str(current.join(location)))
                continue
            if status >= 400:
                raise FetchError(f"the page answered HTTP {status}", "check the link")
            if accept_pdf and _kind(content_type) == "application/pdf":
                return Page(str(current), "", "", "application/pdf", body)
            return _page(str(current), content_type, body)
    raise FetchError(
        f"the link redirects more than {limits.max_redirects} times", "send the final address"
    )


def _parse(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError) as exc:
        raise FetchError(f"{url[:100]!r} is not a web address", "send a link") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise FetchError(
            f"{url[:100]!r} is not an http(s) link", "send a link starting with https://"
        )
    return parsed


def is_private(ip: IP) -> bool:
    """Private, loopback, link-local, multicast, reserved or unspecified (IPv4 in IPv6 too)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return is_private(ip.ipv4_mapped)
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _public_address(url: httpx.URL, limits: FetchLimits) -> str:
    """The address to connect to: the first the host resolves to, once all of them pass."""
    host = url.host
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        addresses = (limits.resolve or resolve)(host, port)
    except (OSError, UnicodeError) as exc:
        raise FetchError(f"{host} could not be found", "check the address") from exc
    if not addresses:
        raise FetchError(f"{host} could not be found", "check the address")
    blocked = limits.blocked or is_private
    if not limits.allow_private:
        for address in addresses:
            if blocked(ipaddress.ip_address(address.split("%", 1)[0])):
                raise FetchError(
                    f"{host} is a private or local address ({address}); I only fetch public pages",
                    "send a link to a public web page",
                )
    return addresses[0]


def _get(
    client: httpx.Client,
    url: httpx.URL,
    address: str,
    limits: FetchLimits,
    deadline: float,
) -> tuple[int, str | None, str, bytes]:
    """One GET to ``address``: (status, redirect location or None, content type, body)."""
    pinned = url.copy_with(host=address)
    headers = {"Host": url.netloc.decode("ascii"), "User-Agent": USER_AGENT, "Accept": "*/*"}
    extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
    left = deadline - time.monotonic()
    if left <= 0:
        raise FetchError(f"the page took longer than {limits.timeout_s:g} s", "try again later")
    try:
        with client.stream(
            "GET", pinned, headers=headers, extensions=extensions, timeout=left
        ) as response:
            if response.is_redirect and response.headers.get("location"):
                return response.status_code, response.headers["location"], "", b""
            content_type = response.headers.get("content-type", "")
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > limits.max_bytes:
                raise _too_big(limits)
            body = bytearray()
            for piece in response.iter_bytes():
                body += piece
                if len(body) > limits.max_bytes:
                    raise _too_big(limits)
                if time.monotonic() > deadline:
                    raise FetchError(
                        f"the page took longer than {limits.timeout_s:g} s", "try again later"
                    )
            return response.status_code, None, content_type, bytes(body)
    except httpx.TimeoutException as exc:
        raise FetchError(
            f"the page took longer than {limits.timeout_s:g} s", "try again later"
        ) from exc
    except httpx.HTTPError as exc:
        raise FetchError(
            f"the page could not be fetched ({type(exc).__name__})", "check the link"
        ) from exc


def _too_big(limits: FetchLimits) -> FetchError:
    return FetchError(
        f"the page is larger than the {limits.max_bytes / 1e6:g} MB limit",
        "send a link to a smaller page",
    )


def _kind(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _page(url: str, content_type: str, body: bytes) -> Page:
    import trafilatura

    kind = _kind(content_type)
    if kind == "application/pdf":
        raise FetchError(
            "the link is a PDF document, not a web page", "download it and send me the file"
        )
    if kind and kind not in TEXT_TYPES:
        raise FetchError(f"the link is not a web page (it is {kind})", "send a link to a page")
    charset = "utf-8"
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset" and value:
            charset = value.strip('"')
    try:
        html = body.decode(charset, errors="replace")
    except LookupError:
        html = body.decode("utf-8", errors="replace")
    if kind in ("text/plain", "text/markdown"):
        return Page(url, "", html.strip(), kind)
    text = trafilatura.extract(html, url=url, include_comments=False, favor_recall=True)
    if not text:
        text = trafilatura.html2txt(html) or ""
    metadata = trafilatura.extract_metadata(html)
    title = (metadata.title if metadata is not None else None) or ""
    if not text.strip():
        raise FetchError("the page has no readable text", "send a link to an article or page")
    return Page(url, title.strip(), text.strip(), kind or "text/html")
