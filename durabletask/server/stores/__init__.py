"""Task hub stores: pick one by URL."""

from durabletask.server.stores.base import Store
from durabletask.server.stores.sqlite import StoreUrlError, open_sqlite


def open_store(url: str) -> Store:
    """Open the store named by `url` (sqlite:///PATH); raises StoreUrlError with a one-sentence reason."""
    if url.startswith("sqlite:"):
        return open_sqlite(url)
    if url.startswith(("postgres:", "postgresql:")):
        raise StoreUrlError("The PostgreSQL store is not available yet; use sqlite:///PATH.")
    raise StoreUrlError(f"Unsupported store URL '{url}': expected sqlite:///PATH/TO/FILE.db.")


__all__ = ["Store", "StoreUrlError", "open_store"]
