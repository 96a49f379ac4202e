"""TLS, mutual TLS and bearer tokens, end to end: real `durabletask-server` processes on loopback
with throwaway certificates, reached by our SDK, the worker runner, the operator's scraper and
Microsoft's SDK."""

import json
import logging
import ssl
import subprocess
import sys
import urllib.request

import grpc
import pytest
from google.protobuf import empty_pb2

from durabletask import client
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as stubs
from durabletask.security import BearerTokenInterceptor, TlsOptions
from durabletask_operator.metrics import scrape_hub
from tests.support.certs import make_certificates
from tests.support.processes import REPO, RunnerProcess, ServerProcess, free_port, ms_run
from tests.support.sdk import new_id, running_worker

OLD_TOKEN = "old-token-5b1f0c3e9a"
NEW_TOKEN = "new-token-d27a64f1c8"
WRONG_TOKEN = "wrong-token-0e93b7a2"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("certs"))


def credentials(certs, client_certificate: bool = False) -> grpc.ChannelCredentials:
    if not client_certificate:
        return grpc.ssl_channel_credentials(certs.ca.read_bytes())
    return grpc.ssl_channel_credentials(certs.ca.read_bytes(), certs.client_key.read_bytes(),
                                        certs.client_cert.read_bytes())


def tls_options(certs, client_certificate: bool = False) -> TlsOptions:
    if not client_certificate:
        return TlsOptions(root_certificates_file=str(certs.ca))
    return TlsOptions(root_certificates_file=str(certs.ca), certificate_chain_file=str(certs.client_cert),
                      private_key_file=str(certs.client_key))


@pytest.fixture
def tls_hub(tmp_path, certs):
    """Start a TLS server with `tls_hub(*more_flags, mutual=..., env=..., metrics_port=...)`; its log
    is in `server.log_file`."""
    started = []

    def start(*flags: str, mutual: bool = False, env=None, metrics_port: int = 0) -> ServerProcess:
        n = len(started)
        tls_flags = ["--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key)]
        if mutual:
            tls_flags += ["--tls-client-ca", str(certs.ca)]
        server = ServerProcess(f"sqlite:///{tmp_path}/hub-{n}.db", extra_args=(*tls_flags, *flags),
                               metrics_port=metrics_port, credentials=credentials(certs, mutual), env=env,
                               log_file=tmp_path / f"server-{n}.log")
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


def hello(address: str, channel_credentials=None, metadata=None) -> grpc.StatusCode:
    """The status of a Hello call: OK, or why it was refused."""
    channel = grpc.secure_channel(address, channel_credentials) if channel_credentials \
        else grpc.insecure_channel(address)
    with channel:
        try:
            stubs.TaskHubSidecarServiceStub(channel).Hello(empty_pb2.Empty(), metadata=metadata, timeout=5)
            return grpc.StatusCode.OK
        except grpc.RpcError as error:
            return error.code()


# ---- TLS ------------------------------------------------------------------------------------

def test_a_tls_client_is_served_and_plaintext_or_untrusting_clients_are_not(tls_hub, certs):
    server = tls_hub()
    with client.TaskHubGrpcClient(host_address=server.address, tls_options=tls_options(certs)) as hub:
        instance_id = hub.schedule_new_orchestration("anything", instance_id=new_id("tls"))
        assert hub.get_orchestration_state(instance_id).runtime_status == client.OrchestrationStatus.PENDING
    assert hello(server.address) == grpc.StatusCode.UNAVAILABLE
    # A TLS client trusting only the public roots does not accept the private CA's certificate.
    assert hello(server.address, grpc.ssl_channel_credentials()) == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_refuses_a_client_without_a_certificate(tls_hub, certs):
    server = tls_hub(mutual=True)
    assert hello(server.address, credentials(certs)) == grpc.StatusCode.UNAVAILABLE
    with client.TaskHubGrpcClient(host_address=f"grpcs://{server.address}",
                                  tls_options=tls_options(certs, client_certificate=True)) as hub:
        instance_id = hub.schedule_new_orchestration("anything", instance_id=new_id("mtls"))
        assert hub.get_orchestration_state(instance_id) is not None


def test_metrics_are_served_over_https_and_the_operator_scrapes_them_with_the_ca(tls_hub, certs):
    metrics_port = free_port()
    server = tls_hub(metrics_port=metrics_port)
    with client.TaskHubGrpcClient(host_address=server.address, tls_options=tls_options(certs)) as hub:
        hub.schedule_new_orchestration("anything", instance_id=new_id("metrics"), version="3.1")
    trusting = ssl.create_default_context(cafile=str(certs.ca))
    url = f"https://127.0.0.1:{metrics_port}/metrics"
    assert "durabletask_orchestrations" in urllib.request.urlopen(url, context=trusting, timeout=10).read().decode()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)
    assert scrape_hub(url, tls=trusting) == {"3.1": 1}
    assert scrape_hub(url) is None  # without the CA the certificate is not trusted


# ---- start-up errors ------------------------------------------------------------------------

def start_up_errors(certs, tmp_path):
    missing = tmp_path / "missing.pem"
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    empty_tokens = tmp_path / "empty-tokens"
    empty_tokens.write_text("\n  \n")
    cert, key = str(certs.server_cert), str(certs.server_key)
    return [
        (["--tls-cert", str(missing), "--tls-key", key], f"--tls-cert {missing} cannot be read"),
        (["--tls-cert", cert, "--tls-key", str(missing)], f"--tls-key {missing} cannot be read"),
        (["--tls-cert", str(not_pem), "--tls-key", key], f"--tls-cert {not_pem} is not a PEM certificate."),
        (["--tls-cert", cert, "--tls-key", str(certs.client_key)],
         f"--tls-key {certs.client_key} is not the private key of the certificate in --tls-cert {cert}."),
        (["--tls-cert", cert, "--tls-key", str(not_pem)], f"--tls-key {not_pem} is not a PEM private key"),
        (["--tls-cert", cert], "--tls-cert needs --tls-key as well"),
        (["--tls-client-ca", str(certs.ca)], f"--tls-client-ca {certs.ca} needs --tls-cert and --tls-key"),
        (["--tls-cert", cert, "--tls-key", key, "--tls-client-ca", str(missing)],
         f"--tls-client-ca {missing} cannot be read"),
        (["--auth-token-file", str(missing)], f"--auth-token-file {missing} cannot be read"),
        (["--auth-token-file", str(empty_tokens)], f"--auth-token-file {empty_tokens} holds no token"),
    ]


def test_bad_tls_or_token_files_exit_2_with_one_sentence_naming_flag_and_file(certs, tmp_path):
    for flags, expected in start_up_errors(certs, tmp_path):
        done = subprocess.run([sys.executable, "-m", "durabletask.server", "--port", str(free_port()),
                               "--metrics-port", "0", "--store", f"sqlite:///{tmp_path}/hub.db", *flags],
                              capture_output=True, text=True, timeout=30, cwd=REPO)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2, (flags, done.stderr)
        assert len(lines) == 1 and lines[0].startswith(f"durabletask-server: {expected}"), (flags, done.stderr)
        assert lines[0].endswith("."), done.stderr


# ---- bearer tokens --------------------------------------------------------------------------

def test_calls_without_an_accepted_token_are_unauthenticated_and_logged_without_the_token(tls_hub, certs,
                                                                                        tmp_path):
    token_file = tmp_path / "tokens"
    token_file.write_text(f"{OLD_TOKEN}\n")
    server = tls_hub("--auth-token-file", str(token_file), "--log-level", "DEBUG")
    options = tls_options(certs)
    with client.TaskHubGrpcClient(host_address=server.address, tls_options=options) as anonymous:
        with pytest.raises(grpc.RpcError) as missing:
            anonymous.schedule_new_orchestration("anything")
    with client.TaskHubGrpcClient(host_address=server.address, tls_options=options,
                                  metadata=[("authorization", f"Bearer {WRONG_TOKEN}")]) as wrong:
        with pytest.raises(grpc.RpcError) as refused:
            wrong.get_orchestration_state("anything")
    assert missing.value.code() == refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "requires a bearer token" in missing.value.details()
    assert "not one this task hub accepts" in refused.value.details()
    with grpc.secure_channel(server.address, credentials(certs)) as channel:  # a worker's stream, too
        with pytest.raises(grpc.RpcError) as stream_refused:
            next(stubs.TaskHubSidecarServiceStub(channel).GetWorkItems(pb.GetWorkItemsRequest(), timeout=5))
    assert stream_refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with client.TaskHubGrpcClient(host_address=server.address, tls_options=options,
                                  metadata=[("authorization", f"Bearer {OLD_TOKEN}")]) as member:
        instance_id = member.schedule_new_orchestration("anything", instance_id=new_id("token"))
        assert member.get_orchestration_state(instance_id) is not None
    server.stop()
    log = server.log_file.read_text()
    assert "(TLS, bearer token required)" in log, log
    assert "Refused /TaskHubSidecarService/StartInstance from ipv4:127.0.0.1:" in log, log
    assert "Refused /TaskHubSidecarService/GetInstance from ipv4:127.0.0.1:" in log, log
    assert OLD_TOKEN not in log and WRONG_TOKEN not in log


def test_rewriting_the_token_file_rotates_tokens_without_a_restart(tls_hub, certs, tmp_path):
    server_tokens, client_token = tmp_path / "accepted", tmp_path / "mine"
    server_tokens.write_text(f"{OLD_TOKEN}\n")
    client_token.write_text(f"{OLD_TOKEN}\n")
    server = tls_hub("--auth-token-file", str(server_tokens))
    ca = credentials(certs)

    def bearer(token):
        return [("authorization", f"Bearer {token}")]

    with client.TaskHubGrpcClient(host_address=server.address, tls_options=tls_options(certs),
                                  interceptors=[BearerTokenInterceptor(str(client_token))]) as rotating:
        assert rotating.get_orchestration_state("nobody") is None
        # Overlap: the server accepts both while clients move over ...
        server_tokens.write_text(f"{OLD_TOKEN}\n{NEW_TOKEN}\n")
        assert hello(server.address, ca, bearer(OLD_TOKEN)) == grpc.StatusCode.OK
        assert hello(server.address, ca, bearer(NEW_TOKEN)) == grpc.StatusCode.OK
        client_token.write_text(f"{NEW_TOKEN}\n")
        # ... then the old token is withdrawn: the client that re-reads its file is still let in.
        server_tokens.write_text(f"{NEW_TOKEN}\n")
        assert hello(server.address, ca, bearer(OLD_TOKEN)) == grpc.StatusCode.UNAUTHENTICATED
        assert hello(server.address, ca, bearer(NEW_TOKEN)) == grpc.StatusCode.OK
        assert rotating.get_orchestration_state("nobody") is None


def test_the_accepted_token_can_come_from_the_environment(tls_hub, certs):
    server = tls_hub(env={"DURABLETASK_AUTH_TOKEN": NEW_TOKEN})
    ca = credentials(certs)
    assert hello(server.address, ca) == grpc.StatusCode.UNAUTHENTICATED
    assert hello(server.address, ca, [("authorization", f"bearer {NEW_TOKEN}")]) == grpc.StatusCode.OK


def test_a_channel_of_your_own_is_used_as_it_is_and_left_open(tls_hub, certs, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(f"{NEW_TOKEN}\n")
    server = tls_hub("--auth-token-file", str(token_file))
    channel = grpc.intercept_channel(grpc.secure_channel(server.address, credentials(certs)),
                                     BearerTokenInterceptor(str(token_file)))
    hub = client.TaskHubGrpcClient(channel=channel)
    with running_worker(None, orchestrators=[echo], channel=channel):
        instance_id = hub.schedule_new_orchestration(echo, input="mine", instance_id=new_id("channel"))
        assert hub.wait_for_orchestration_completion(instance_id, timeout=30).get_output() == "mine"
    hub.close()
    assert stubs.TaskHubSidecarServiceStub(channel).Hello(empty_pb2.Empty(), timeout=5) is not None
    channel.close()


def echo(ctx, value):
    return value


def test_tls_options_that_contradict_themselves_or_the_address_are_refused(certs):
    with pytest.raises(ValueError, match="certificate_chain_file and private_key_file together"):
        TlsOptions(certificate_chain_file=str(certs.client_cert))
    with pytest.raises(ValueError, match="asks for plain text"):
        client.TaskHubGrpcClient(host_address="http://127.0.0.1:1", tls_options=tls_options(certs))


# ---- the worker runner and Microsoft's SDK --------------------------------------------------

def test_the_worker_runner_completes_an_orchestration_over_mutual_tls_with_a_token(tls_hub, certs, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(f"{NEW_TOKEN}\n")
    server = tls_hub("--auth-token-file", str(token_file), mutual=True)
    runner = RunnerProcess("--app", "tests.support.napping_app", "--address", server.address,
                           env={"DURABLETASK_TLS_CA": str(certs.ca), "DURABLETASK_TLS_CERT": str(certs.client_cert),
                                "DURABLETASK_TLS_KEY": str(certs.client_key),
                                "DURABLETASK_TOKEN_FILE": str(token_file)}).start()
    try:
        runner.wait_until("/readyz", 200)
        with client.TaskHubGrpcClient(host_address=server.address, tls_options=tls_options(certs, True),
                                      interceptors=[BearerTokenInterceptor(str(token_file))]) as hub:
            instance_id = hub.schedule_new_orchestration("napping", input=0, instance_id=new_id("runner"))
            state = hub.wait_for_orchestration_completion(instance_id, timeout=30)
        assert state.runtime_status == client.OrchestrationStatus.COMPLETED
        assert state.get_output() == runner.process.pid
    finally:
        runner.stop()


MS_HELLO_SCRIPT = """
import json, sys
from durabletask import client, task, worker

def greet(ctx: task.ActivityContext, name: str) -> str:
    return f"Hello, {name}!"

def greeting(ctx: task.OrchestrationContext, name: str):
    return (yield ctx.call_activity(greet, input=name))

address, token = sys.argv[1], sys.argv[2]
metadata = [("authorization", f"Bearer {token}")]
w = worker.TaskHubGrpcWorker(host_address=address, secure_channel=True, metadata=metadata)
w.add_orchestrator(greeting)
w.add_activity(greet)
w.start()
try:
    c = client.TaskHubGrpcClient(host_address=address, secure_channel=True, metadata=metadata)
    instance_id = c.schedule_new_orchestration(greeting, input="TLS")
    state = c.wait_for_orchestration_completion(instance_id, timeout=60)
    print(json.dumps({"status": state.runtime_status.name, "output": state.serialized_output}))
finally:
    w.stop()
"""


def test_microsofts_sdk_completes_an_orchestration_with_only_its_own_parameters(tls_hub, certs, tmp_path,
                                                                               monkeypatch):
    token_file = tmp_path / "token"
    token_file.write_text(f"{NEW_TOKEN}\n")
    server = tls_hub("--auth-token-file", str(token_file))
    # gRPC's own setting for the roots it trusts: Microsoft's secure_channel=True then accepts the private CA.
    monkeypatch.setenv("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", str(certs.ca))
    done = ms_run(MS_HELLO_SCRIPT, f"grpcs://{server.address}", NEW_TOKEN, timeout=90)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"status": "COMPLETED", "output": '"Hello, TLS!"'}


# ---- payloads ---------------------------------------------------------------------------------
def shout(ctx, text: str) -> str:
    return text.upper()


def relay(ctx, text: str):
    return (yield ctx.call_activity(shout, input=text))


def test_payloads_are_never_logged_by_the_server_or_the_sdk_even_at_debug(tmp_path, caplog):
    secret = new_id("card-number")
    server = ServerProcess(f"sqlite:///{tmp_path}/hub.db", extra_args=("--log-level", "DEBUG"),
                           log_file=tmp_path / "server.log").start()
    try:
        with caplog.at_level(logging.DEBUG), running_worker(server.address, [relay], [shout]), \
                client.TaskHubGrpcClient(host_address=server.address) as hub:
            instance_id = hub.schedule_new_orchestration(relay, input=secret)
            state = hub.wait_for_orchestration_completion(instance_id, timeout=30)
    finally:
        server.stop()
    assert state.get_output() == secret.upper()
    server_log = server.log_file.read_text()
    assert "listening" in server_log  # the log was written at all
    for log in (server_log, caplog.text):
        assert secret not in log and secret.upper() not in log
