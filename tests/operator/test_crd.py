"""The CRD's OpenAPI schema against the example manifests, and the operator's defaults against the CRD's."""

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml

from durabletask_operator import spec

CRDS = Path(__file__).resolve().parents[2] / "crds"
CRD = yaml.safe_load((CRDS / "workerpools.yaml").read_text())
VERSION = CRD["spec"]["versions"][0]
SCHEMA = VERSION["schema"]["openAPIV3Schema"]
EXAMPLES = sorted((CRDS / "examples").glob("*.yaml"))  # what `kubectl apply -f crds/examples/` applies
ALL_EXAMPLES = sorted((CRDS / "examples").rglob("*.yaml"))  # and the variants in subdirectories


def validate(manifest):
    jsonschema.validate(manifest, SCHEMA, cls=jsonschema.Draft7Validator)


def test_the_crd_names_the_resource_the_operator_watches():
    assert CRD["metadata"]["name"] == f"{spec.PLURAL}.{spec.GROUP}"
    names = (CRD["spec"]["group"], VERSION["name"], CRD["spec"]["names"]["kind"])
    assert names == (spec.GROUP, spec.API_VERSION, spec.KIND)
    assert CRD["spec"]["scope"] == "Namespaced" and "status" in VERSION["subresources"]


def test_there_are_v1_and_v2_examples_of_one_app():
    manifests = [yaml.safe_load(path.read_text()) for path in EXAMPLES]
    assert {m["spec"]["app"] for m in manifests} == {"orders"}
    assert sorted(m["spec"]["version"] for m in manifests) == ["1.0", "2.0"]


@pytest.mark.parametrize("path", ALL_EXAMPLES, ids=lambda p: str(p.relative_to(CRDS / "examples")))
def test_examples_match_the_schema(path):
    validate(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize("change, field", [
    (lambda s: s.update(matchStrategy="Newest"), "matchStrategy"),
    (lambda s: s.update(failureStrategy="Retry"), "failureStrategy"),
    (lambda s: s.update(version="1.0 beta"), "version"),
    (lambda s: s.update(replicas=-1), "replicas"),
    (lambda s: s.update(taskHubAddress="no-port"), "taskHubAddress"),
    (lambda s: s.pop("image"), "image"),
    (lambda s: s["drain"].update(scaleDownDelaySeconds=-5), "scaleDownDelaySeconds"),
    (lambda s: s.update(hub={"tls": {"caKey": "ca.crt"}}), "secretName"),
    (lambda s: s.update(hub={"tls": {"secretName": "Hub_TLS"}}), "Hub_TLS"),
    (lambda s: s.update(hub={"tls": {"secretName": "hub", "mutual": "yes"}}), "mutual"),
    (lambda s: s.update(hub={"tls": {"secretName": "hub", "keyKey": "keys/tls.key"}}), "keys/tls.key"),
    (lambda s: s.update(hub={"auth": {"tokenKey": "token"}}), "tokenSecret"),
    (lambda s: s.update(hub={"auth": {"tokenSecret": "hub-token", "tokenKey": "a b"}}), "a b"),
])
def test_the_schema_rejects_bad_specs(change, field):
    manifest = copy.deepcopy(yaml.safe_load(EXAMPLES[0].read_text()))
    change(manifest["spec"])
    with pytest.raises(jsonschema.ValidationError) as error:
        validate(manifest)
    assert field in str(error.value)


def test_operator_defaults_are_the_crd_defaults():
    properties = SCHEMA["properties"]["spec"]["properties"]
    assert {name: properties[name]["default"] for name in spec.DEFAULTS} == spec.DEFAULTS
    drain = properties["drain"]["properties"]
    assert {name: drain[name]["default"] for name in spec.DRAIN_DEFAULTS} == spec.DRAIN_DEFAULTS
    hub = properties["hub"]["properties"]
    for defaults, fields in ((spec.HUB_TLS_DEFAULTS, hub["tls"]["properties"]),
                             (spec.HUB_AUTH_DEFAULTS, hub["auth"]["properties"])):
        assert {name: field["default"] for name, field in fields.items() if "default" in field} == defaults
        for name, field in fields.items():  # the operator's own checks are the schema's
            if field["type"] == "string":
                pattern = spec.SECRET_NAME if name in ("secretName", "tokenSecret") else spec.SECRET_KEY
                assert (field["pattern"], field["maxLength"]) == (pattern.pattern, spec.MAX_NAME_OR_KEY), name
    assert tuple(properties["matchStrategy"]["enum"]) == spec.MATCH_STRATEGIES
    assert tuple(properties["failureStrategy"]["enum"]) == spec.FAILURE_STRATEGIES


def test_printer_columns_point_at_schema_fields():
    for column in VERSION["additionalPrinterColumns"]:
        path = column["jsonPath"].lstrip(".").split(".")
        if path[0] == "metadata":
            continue
        node = SCHEMA
        for part in path:
            node = node["properties"][part]
        assert node["type"] == column["type"], column["name"]
    names = [c["name"] for c in VERSION["additionalPrinterColumns"]]
    assert names == ["App", "Version", "Match", "Desired", "Ready", "Running", "Phase", "Age"]


def test_the_status_schema_allows_every_phase_the_planner_sets():
    from durabletask_operator import planner
    phases = SCHEMA["properties"]["status"]["properties"]["phase"]["enum"]
    assert phases == [planner.ACTIVE, planner.DRAINING, planner.DRAINED, planner.SCALED_DOWN, planner.INVALID]
