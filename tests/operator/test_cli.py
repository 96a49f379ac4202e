"""The operator refuses to start without what it needs, and says which flag is missing or wrong."""

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("args, message", [
    (["--namespace", "shop"], "one of --prometheus-url or --hub-metrics-url is required"),
    (["--hub-metrics-url", "http://hub:9464/metrics"], "choose the scope: --namespace NAME"),
    (["--hub-metrics-url", "https://hub:9464/metrics", "-A", "--metrics-ca-file", "/no/such/ca.crt"],
     "--metrics-ca-file /no/such/ca.crt is not a readable PEM CA file (No such file or directory)."),
])
def test_missing_settings_are_named(args, message):
    result = subprocess.run([sys.executable, "-m", "durabletask_operator.cli", *args], capture_output=True, text=True,
                            env={k: v for k, v in os.environ.items() if not k.startswith("DURABLETASK_")})
    assert result.returncode == 2
    assert message in result.stderr
