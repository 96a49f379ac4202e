"""Task hub stores: pick one by URL."""

import urllib.parse

from durabletask.server.stores.base import Store, StoreUrlError
from durabletask.server.stores.sqlite import open_sqlite


def safe_url(url: str) -> str:
    """The store URL without its password, for messages and logs."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def open_store(url: str) -> Store:
    """Open the store named by `url` (sqlite:///PATH or postgresql://...); raises StoreUrlError with a
    one-sentence reason."""
    if url.startswith("sqlite:"):
        return open_sqlite(url)
    if url.startswith(("postgres:", "postgresql:")):
        try:  # psycopg is an optional extra: only PostgreSQL users need it
            from durabletask.server.stores.postgres import open_postgres
        except ImportError:
            raise StoreUrlError("The PostgreSQL store needs psycopg: pip install 'durabletask-pools[postgres]'.") \
                from None
        return open_postgres(url)
    raise StoreUrlError(f"Unsupported store URL '{safe_url(url)}': expected sqlite:///PATH/TO/FILE.db or "
                        "postgresql://USER@HOST:PORT/DATABASE.")


__all__ = ["Store", "StoreUrlError", "open_store", "safe_url"]
