"""Live orchestration instances per version, read from the task hub's metrics.

The source is Prometheus when configured (an instant query), otherwise the task hub server's own
`/metrics` page. Any failure, a missing metric or stale data gives None ("unknown"): the planner
never drains on unknown, so a wrong zero here would be worse than no answer.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

logger = logging.getLogger(__name__)

METRIC = "durabletask_orchestrations"
# Statuses of instances that still need a worker (CONTINUED_AS_NEW is about to run again).
LIVE_STATUSES = ("RUNNING", "PENDING", "SUSPENDED", "CONTINUED_AS_NEW")

Counts = dict[str, int]


def counts_from_exposition(text: str) -> Counts | None:
    """Sum the gauge's live statuses by version; None when the page has no such metric."""
    for family in text_string_to_metric_families(text):
        if family.name == METRIC:
            counts: Counts = {}
            for sample in family.samples:
                if sample.labels.get("status") in LIVE_STATUSES:
                    version = sample.labels.get("version", "")
                    counts[version] = counts.get(version, 0) + int(sample.value)
            return counts
    return None


def scrape_hub(metrics_url: str, timeout: float = 5.0, tls: ssl.SSLContext | None = None) -> Counts | None:
    """Counts from the task hub server's `/metrics` page (`tls`: whom to trust when it is https://)."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=timeout, context=tls) as response:
            text = response.read().decode()
    except (OSError, ValueError) as error:
        logger.warning("Instance counts are unknown: scraping %s failed: %s", metrics_url, error)
        return None
    counts = counts_from_exposition(text)
    if counts is None:
        logger.warning("Instance counts are unknown: %s has no %s metric.", metrics_url, METRIC)
    return counts


def query_prometheus(prometheus_url: str, timeout: float = 5.0, max_age: float = 60.0,
                     tls: ssl.SSLContext | None = None) -> Counts | None:
    """Counts from Prometheus, provided its newest sample of the metric is at most `max_age` seconds old."""
    try:
        age = _instant_query(prometheus_url, f"time() - max(timestamp({METRIC}))", timeout, tls)
        if not age:
            logger.warning("Instance counts are unknown: Prometheus at %s has no %s series.", prometheus_url, METRIC)
            return None
        if float(age[0]["value"][1]) > max_age:
            logger.warning("Instance counts are unknown: the newest %s sample in Prometheus is %.0f s old.",
                           METRIC, float(age[0]["value"][1]))
            return None
        # Every replica of a hub reports the same store's counts: take one per series, then sum by version.
        live = f'{METRIC}{{status=~"{"|".join(LIVE_STATUSES)}"}}'
        result = _instant_query(prometheus_url, f"sum by (version) (max by (name, version, status) ({live}))",
                                timeout, tls)
    except (OSError, ValueError, KeyError) as error:
        logger.warning("Instance counts are unknown: querying Prometheus at %s failed: %s", prometheus_url, error)
        return None
    return {sample["metric"].get("version", ""): int(float(sample["value"][1])) for sample in result}


def _instant_query(prometheus_url: str, query: str, timeout: float, tls: ssl.SSLContext | None) -> list[dict]:
    url = f"{prometheus_url.rstrip('/')}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    with urllib.request.urlopen(url, timeout=timeout, context=tls) as response:
        answer = json.load(response)
    if answer.get("status") != "success":
        raise ValueError(f"Prometheus answered {answer.get('status')}: {answer.get('error')}")
    return answer["data"]["result"]


class SharedCounts:
    """One read serves every pool's check for `ttl` seconds, so N pools cost one scrape per interval."""

    def __init__(self, read: Callable[[], Counts | None], ttl: float, clock: Callable[[], float] = time.monotonic):
        self._read, self._ttl, self._clock = read, ttl, clock
        self._lock = threading.Lock()
        self._read_at: float | None = None
        self._counts: Counts | None = None

    def get(self) -> Counts | None:
        with self._lock:
            if self._read_at is None or self._clock() - self._read_at >= self._ttl:
                self._counts, self._read_at = self._read(), self._clock()
            return self._counts
