"""Read a Prometheus /metrics endpoint in tests."""

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


class Scrape:
    """One scrape's samples, looked up by sample name and labels."""

    def __init__(self, text: str):
        self.samples = [s for family in text_string_to_metric_families(text) for s in family.samples]

    def total(self, metric: str, /, **labels: str) -> float:
        """The sum of the samples called `metric` whose labels include `labels` (0 when none)."""
        return sum(s.value for s in self.samples
                   if s.name == metric and all(s.labels.get(k) == v for k, v in labels.items()))

    def by(self, name: str, *label_names: str) -> dict[tuple[str, ...], float]:
        """{label values: value} of the non-zero samples called `name`."""
        return {tuple(s.labels[n] for n in label_names): s.value for s in self.samples
                if s.name == name and s.value}


def scrape(port: int) -> Scrape:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return Scrape(response.read().decode())
