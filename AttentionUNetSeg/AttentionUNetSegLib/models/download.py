"""Downloading model files: https only, atomic, verified against a sha256 before anything can use them.

The file is streamed into a temporary file beside its destination while its sha256 is computed; it
replaces the destination only when every byte arrived and the checksum matches, so an interrupted or
failed download leaves nothing behind. Redirects are followed only to other https URLs.
"""
from __future__ import annotations

import hashlib
import http.client
import re
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlparse

from ..errors import InvalidOptionError, ModelFileError
from ..io.atomic import atomic_file

SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60.0
DownloadProgress = Callable[[int, Optional[int]], None]
"""Called with (bytes received so far, total bytes or None if the server does not say)."""


def check_https_url(url: str) -> str:
    """`url` if it is an https URL with a host; otherwise an error that says what to give instead."""
    parsed = urlparse(url)
    if parsed.scheme != "https" or not parsed.netloc:
        raise InvalidOptionError(f"{url!r} is not an https URL: models are downloaded over https only "
                                 "(give https://..., or register a local file with --file)")
    return url


def check_sha256(value: str) -> str:
    """The lower-case sha256 hex digest `value`, or an error naming the expected form."""
    digest = value.strip().lower()
    if not SHA256_PATTERN.match(digest):
        raise InvalidOptionError(f"{value!r} is not a sha256 checksum (64 hexadecimal digits, as `sha256sum` prints)")
    return digest


class _HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only if it stays on https (no silent downgrade to http or another scheme)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D102 (urllib's signature)
        check_https_url(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def download(url: str, destination: Path, sha256: str, progress: Optional[DownloadProgress] = None) -> Path:
    """Fetch `url` to `destination` atomically and verify its sha256; on any failure nothing is left behind.

    Certificates are checked against the system's trust store (the SSL_CERT_FILE environment variable
    points elsewhere, as for any OpenSSL program).
    """
    check_https_url(url)
    expected = check_sha256(sha256)
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=ssl.create_default_context()), _HttpsOnlyRedirects())
    digest = hashlib.sha256()
    received = 0
    try:
        with opener.open(url, timeout=TIMEOUT_S) as response, atomic_file(destination) as tmp:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with open(tmp, "wb") as handle:
                while chunk := response.read(CHUNK_BYTES):
                    handle.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    if progress is not None:
                        progress(received, total)
            if total is not None and received != total:
                raise ModelFileError(f"download of {url} broke off after {received} of {total} bytes; "
                                     "nothing was kept: try again")
            if digest.hexdigest() != expected:
                raise ModelFileError(f"download of {url} has sha256 {digest.hexdigest()}, not the expected "
                                     f"{expected}: the file is corrupt or not the one registered; nothing was kept")
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise ModelFileError(f"download of {url} failed ({_reason(exc)}); nothing was kept: check the URL and "
                             "the network, then try again") from exc
    return destination


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason if reason is not None else exc) or type(exc).__name__
