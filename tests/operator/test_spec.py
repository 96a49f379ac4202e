"""spec.hub as the operator reads it: defaults as in the CRD, and one sentence for each value the
workers' Secrets cannot be mounted with."""

import pytest

from durabletask_operator.spec import HubAuth, HubTls, Pool, hub_problem


def pool(**spec):
    return Pool.from_body({"metadata": {"name": "orders-v2"},
                           "spec": {"app": "orders", "version": "2.0", "taskHubAddress": "hub:4001", **spec}})


def test_without_spec_hub_the_workers_get_no_secrets():
    parsed = pool()
    assert (parsed.hub_tls, parsed.hub_auth, hub_problem(parsed)) == (None, None, None)


def test_tls_and_auth_take_the_crds_defaults():
    parsed = pool(hub={"tls": {"secretName": "hub-client"}, "auth": {"tokenSecret": "hub-token"}})
    assert parsed.hub_tls == HubTls("hub-client", ca_key="ca.crt", mutual=False, cert_key="tls.crt", key_key="tls.key")
    assert parsed.hub_auth == HubAuth("hub-token", token_key="token")
    assert hub_problem(parsed) is None


def test_key_names_can_be_changed():
    parsed = pool(hub={"tls": {"secretName": "hub-client", "caKey": "root.pem", "mutual": True,
                               "certKey": "worker.pem", "keyKey": "worker-key.pem"},
                       "auth": {"tokenSecret": "hub-token", "tokenKey": "worker_token"}})
    assert parsed.hub_tls == HubTls("hub-client", "root.pem", True, "worker.pem", "worker-key.pem")
    assert parsed.hub_auth == HubAuth("hub-token", "worker_token")
    assert hub_problem(parsed) is None


@pytest.mark.parametrize("hub, message", [
    ({"tls": {}}, "spec.hub.tls.secretName is missing: give the name of the Secret to mount."),
    ({"auth": {"tokenSecret": ""}}, "spec.hub.auth.tokenSecret is missing: give the name of the Secret to mount."),
    ({"tls": {"secretName": "Hub_TLS"}},
     "spec.hub.tls.secretName 'Hub_TLS' is not a Secret name: use up to 253 lowercase letters, digits, '-' or '.', "
     "starting and ending with a letter or digit."),
    ({"auth": {"tokenSecret": "x" * 254}}, "spec.hub.auth.tokenSecret 'xxx"),
    ({"tls": {"secretName": "hub", "caKey": "certs/ca.crt"}},
     "spec.hub.tls.caKey 'certs/ca.crt' is not a key of a Secret: use up to 253 letters, digits, '-', '_' or '.'."),
    ({"tls": {"secretName": "hub", "mutual": True, "keyKey": ""}}, "spec.hub.tls.keyKey '' is not a key of a Secret"),
    ({"tls": {"secretName": "hub", "mutual": "yes"}}, "spec.hub.tls.mutual 'yes' is not true or false."),
    ({"auth": {"tokenSecret": "hub-token", "tokenKey": 7}}, "spec.hub.auth.tokenKey 7 is not a key of a Secret"),
])
def test_each_bad_value_gets_one_sentence_naming_its_field(hub, message):
    assert hub_problem(pool(hub=hub)).startswith(message)


def test_client_certificate_keys_are_only_checked_when_they_are_used():
    assert hub_problem(pool(hub={"tls": {"secretName": "hub", "certKey": "a/b"}})) is None
