"""Bearer tokens kept in a file, one per line, read again whenever the file changes: rotating a token
is rewriting the file (or, in Kubernetes, updating the Secret mounted there), with no restart."""

from __future__ import annotations

import logging
import os

log = logging.getLogger("durabletask.auth")


def parse_tokens(text: str) -> tuple[str, ...]:
    """The non-blank lines, stripped: several lines let old and new tokens overlap during a rotation."""
    return tuple(line.strip() for line in text.splitlines() if line.strip())


class TokenFile:
    """The tokens in `path`. The first read happens here, so a missing or unreadable file is an
    OSError at start-up; later, a file that cannot be read keeps the tokens last read (a rotation
    caught halfway must not lock everybody out, nor let anybody in)."""

    def __init__(self, path: str):
        self.path = path
        # One tuple, replaced whole, so that threads reading it never see a stamp with the wrong tokens.
        self._state = (self._stamp(), self._read())
        self._unreadable = False  # warn once per outage, not at every call

    def tokens(self) -> tuple[str, ...]:
        stamp, tokens = self._state
        try:
            current = self._stamp()
            if current != stamp:
                tokens = self._read()
                self._state = (current, tokens)
            self._unreadable = False
        except OSError as error:
            if not self._unreadable:
                log.warning("Keeping the tokens last read: %s cannot be read (%s).", self.path, error.strerror)
            self._unreadable = True
        return tokens

    def _stamp(self) -> tuple[int, ...]:
        # Following symlinks: Kubernetes swaps a Secret volume's files by repointing a link.
        status = os.stat(self.path)
        return status.st_ino, status.st_mtime_ns, status.st_ctime_ns, status.st_size

    def _read(self) -> tuple[str, ...]:
        # Undecodable bytes become U+FFFD, which no token a client sends can match.
        with open(self.path, encoding="utf-8", errors="replace") as file:
            return parse_tokens(file.read())
