"""Orchestration version comparison, shared by the SDK (worker checks) and the server (routing).

Versions compare as PEP 440 versions when both parse; otherwise as case-insensitive strings.
An empty or missing version is the oldest of all, and two empty versions are equal.
"""

from packaging.version import InvalidVersion, Version


def compare_versions(left: str | None, right: str | None) -> int:
    """Return -1, 0 or 1 as `left` is older than, equal to, or newer than `right`."""
    if not left or not right:
        return (bool(left) > bool(right)) - (bool(left) < bool(right))
    try:
        a, b = Version(left), Version(right)
    except InvalidVersion:
        a, b = left.lower(), right.lower()
    return (a > b) - (a < b)
