"""Downloading model files: https only, atomic, verified against a sha256 before anything can use them.

`pooch.retrieve` streams the file into a temporary file beside its destination and moves it there only when
every byte arrived and its sha256 matches, so an interrupted or failed download leaves nothing behind; a file
already there with that sha256 is kept. Here: the URL must be https, and so must every redirect; pooch's errors
become ModelFileErrors that say what to do.
"""
from __future__ import annotations

import logging
import os
import re
import ssl
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional, Union
from urllib.parse import urljoin, urlparse

from ..errors import InvalidOptionError, ModelFileError

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


def download(url: str, destination: Path, sha256: str, progress: Optional[DownloadProgress] = None) -> Path:
    """Fetch `url` to `destination` atomically and verify its sha256; on any failure nothing is left behind.

    Certificates are checked against OpenSSL's trust store (the SSL_CERT_FILE and SSL_CERT_DIR environment
    variables point elsewhere, as for any OpenSSL program), else against certifi's.
    """
    import pooch

    check_https_url(url)
    expected = check_sha256(sha256)
    destination = Path(destination)
    downloader = pooch.HTTPDownloader(progressbar=_ProgressBar(progress) if progress else False,
                                      chunk_size=CHUNK_BYTES, timeout=TIMEOUT_S, verify=_trust_store(),
                                      hooks={"response": _refuse_redirects_off_https})
    try:
        with _quiet(pooch.get_logger()):
            pooch.retrieve(url, known_hash=f"sha256:{expected}", fname=destination.name, path=destination.parent,
                           downloader=downloader)
    except InvalidOptionError:  # a redirect off https
        raise
    except ValueError as exc:  # pooch's checksum mismatch (the URL and checksum were checked above)
        raise ModelFileError(f"download of {url} does not have the expected sha256 {expected}: the file is corrupt "
                             "or not the one registered; nothing was kept") from exc
    except OSError as exc:  # requests' errors (HTTP status, connection, a download that broke off) are OSErrors
        raise ModelFileError(f"download of {url} failed ({exc}); nothing was kept: check the URL and the network, "
                             "then try again") from exc
    os.chmod(destination, 0o644)  # pooch's temporary file is owner-only; the cache holds ordinary files
    return destination


class _ProgressBar:
    """What pooch's HTTPDownloader takes as a progress bar (total, update, reset, close), reporting to a
    DownloadProgress. pooch adds a whole chunk for each one, the last one too, then resets and adds the total."""

    def __init__(self, report: DownloadProgress) -> None:
        self.report = report
        self.total = 0
        self.received = 0

    def update(self, count: int) -> None:
        if count:
            self.received = min(self.received + count, self.total) if self.total else self.received + count
            self.report(self.received, self.total or None)

    def reset(self) -> None:
        self.received = 0

    def close(self) -> None:
        """Nothing to close: the caller's bar is the caller's."""


def _trust_store() -> Union[str, bool]:
    """OpenSSL's CA file or folder (the environment's SSL_CERT_FILE/SSL_CERT_DIR first), or True: certifi's."""
    paths = ssl.get_default_verify_paths()
    return paths.cafile or paths.capath or True


def _refuse_redirects_off_https(response, *args, **kwargs) -> None:
    """A requests response hook: a redirect is followed only if it stays on https (no downgrade to http)."""
    if response.is_redirect:
        check_https_url(urljoin(response.url, response.headers["location"]))


@contextmanager
def _quiet(logger: logging.Logger) -> Iterator[None]:
    """pooch logs every download at INFO to stderr: the command line's output stays as it was."""
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
