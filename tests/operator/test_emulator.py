"""The emulator fixture behaves as kopf and kubectl need: a broken fixture would make the operator
tests pass or fail for the wrong reasons."""

import urllib3
from kubernetes import watch


def deployment(name, labels):
    pod = {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
            "spec": {"replicas": 2, "selector": {"matchLabels": labels}, "template": pod}}


def watched(cluster, namespace, **kwargs):
    """Names and types of the events a watch delivers within a second."""
    events = []
    try:
        for event in watch.Watch().stream(cluster.apps.list_namespaced_deployment, namespace,
                                          _request_timeout=1, **kwargs):
            events.append((event["type"], event["object"].metadata.name))
    except (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.ProtocolError):
        pass
    return events


def test_writes_are_stamped_and_watches_resume_after_a_resource_version(cluster, namespace):
    first = cluster.apps.create_namespaced_deployment(namespace, deployment("a", {"app": "a"}))
    assert first.metadata.uid and first.metadata.generation == 1 and first.metadata.creation_timestamp
    listed = cluster.apps.list_namespaced_deployment(namespace)
    cluster.apps.create_namespaced_deployment(namespace, deployment("b", {"app": "b"}))
    patched = cluster.apps.patch_namespaced_deployment("a", namespace, {"spec": {"replicas": 3}})
    assert patched.metadata.generation == 2
    assert int(patched.metadata.resource_version) > int(first.metadata.resource_version)
    assert patched.status.ready_replicas == 3  # the stand-in Deployment controller
    relabelled = cluster.apps.patch_namespaced_deployment("a", namespace, {"metadata": {"labels": {"x": "y"}}})
    assert relabelled.metadata.generation == 2  # metadata is not spec

    assert watched(cluster, namespace, resource_version=listed.metadata.resource_version) == [
        ("ADDED", "b"), ("MODIFIED", "a"), ("MODIFIED", "a")]
    assert watched(cluster, namespace, label_selector="app=b") == [("ADDED", "b")]
    selected = cluster.apps.list_namespaced_deployment(namespace, label_selector="app=a").items
    assert [d.metadata.name for d in selected] == ["a"]
