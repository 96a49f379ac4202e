"""Hello, cities: the smallest complete durable orchestration.

What happens when you run it (`python examples/hello_cities.py`):
  1. our task hub server starts as a subprocess, keeping its state in SQLite in a temporary folder;
  2. a worker starts in this process and registers one activity and one orchestrator;
  3. a client schedules three orchestrations (one of them with a version) and prints their results.
Every process it starts is stopped on the way out, Ctrl-C included.
"""

import socket
import subprocess
import sys
import tempfile
import time

import grpc

from durabletask import client, task, worker


# An activity does the real work (call an API, write a file...). It may run more than once if a
# worker crashes, so keep it idempotent.
def hello(ctx: task.ActivityContext, city: str) -> str:
    return f"Hello {city}!"


# An orchestrator only decides what to do next. Each `yield` waits for a durable step; if the
# worker restarts, the orchestrator is replayed from the recorded history and picks up where it
# left off. So it must be deterministic: no clocks, random numbers or I/O here.
def greetings(ctx: task.OrchestrationContext, _):
    results = []
    for city in ("Tokyo", "Seattle", "London"):
        results.append((yield ctx.call_activity(hello, input=city)))
    # ctx.version is the version fixed on this instance when it was scheduled (None if none).
    return {"version": ctx.version, "greetings": results}


def start_server(folder: str) -> tuple[subprocess.Popen, str]:
    """Start the task hub server on a free local port; with no --store it uses SQLite in `folder`."""
    with socket.socket() as s:  # ask the OS for a free port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = f"{folder}/server.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "durabletask.server", "--host", "127.0.0.1", "--port", str(port),
             "--metrics-port", "0"],
            cwd=folder, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)  # Ctrl-C reaches only us; we stop the server ourselves, after the worker
    address = f"127.0.0.1:{port}"
    with grpc.insecure_channel(address) as channel:  # wait until it accepts connections
        deadline = time.monotonic() + 20
        while True:
            if server.poll() is not None:
                with open(log) as out:
                    raise RuntimeError(f"the server exited with code {server.returncode}:\n{out.read()[-2000:]}")
            try:
                grpc.channel_ready_future(channel).result(timeout=0.2)
                return server, address
            except grpc.FutureTimeoutError:
                if time.monotonic() > deadline:
                    raise TimeoutError("the server did not start listening within 20s")


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="hello-cities-") as folder:
        server, address = start_server(folder)
        try:
            print(f"Task hub server listening on {address}, state in {folder}")
            # The worker runs orchestrators and activities on background threads until stopped.
            with worker.TaskHubGrpcWorker(host_address=address) as w:
                w.add_orchestrator(greetings)
                w.add_activity(hello)
                w.start()

                # The client starts instances and reads their state; it does not need the worker.
                with client.TaskHubGrpcClient(host_address=address) as c:
                    instance_ids = [
                        c.schedule_new_orchestration(greetings),
                        c.schedule_new_orchestration(greetings),
                        c.schedule_new_orchestration(greetings, version="1.0.0"),
                    ]
                    for instance_id in instance_ids:
                        state = c.wait_for_orchestration_completion(instance_id, timeout=30)
                        print(f"{instance_id}  {state.runtime_status.name:<10} {state.serialized_output}")
        finally:
            stop_server(server)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("Interrupted; the worker and the server have been stopped.")
    except (RuntimeError, TimeoutError) as e:
        sys.exit(f"hello_cities failed: {e}")
