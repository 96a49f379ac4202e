"""Our .proto must stay the published contract: same messages, field numbers and types as the
descriptor inside Microsoft's package, plus only our own extensions (field numbers >= 1000)."""

import json
import subprocess
import sys

from tests.support.processes import REPO, ms_run

EXTENSION_FIELD_NUMBERS = 1000

DESCRIBE = """
import json, sys
from google.protobuf import descriptor_pb2
from {module} import orchestrator_service_pb2 as pb
fd = descriptor_pb2.FileDescriptorProto()
pb.DESCRIPTOR.CopyToProto(fd)
out = {{}}
def walk(prefix, messages):
    for m in messages:
        name = prefix + m.name
        out[name] = sorted([f.name, f.number, f.type, f.label, f.type_name.split(".")[-1]] for f in m.field)
        walk(name + ".", m.nested_type)
walk("", fd.message_type)
for e in fd.enum_type:
    out["enum " + e.name] = sorted([v.name, v.number] for v in e.value)
for s in fd.service:
    out["service " + s.name] = sorted([m.name, m.input_type, m.output_type, m.server_streaming] for m in s.method)
print(json.dumps(out))
"""


def describe(python: str, module: str, cwd: str) -> dict:
    result = subprocess.run([python, "-c", DESCRIBE.format(module=module)], capture_output=True, text=True,
                            cwd=cwd, check=True)
    return json.loads(result.stdout)


def test_contract_matches_microsofts_descriptor():
    theirs = json.loads(ms_run(DESCRIBE.format(module="durabletask.internal")).stdout)
    ours = describe(sys.executable, "durabletask.internal", str(REPO))
    ours_without_extensions = {
        name: [field for field in fields if not (isinstance(field[1], int) and field[1] >= EXTENSION_FIELD_NUMBERS
                                                 and not name.startswith(("enum ", "service ")))]
        for name, fields in ours.items()
    }
    assert ours_without_extensions == theirs


def test_generated_code_is_up_to_date(tmp_path):
    proto = "durabletask/internal/orchestrator_service.proto"
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", str(REPO), f"--python_out={tmp_path}",
                    f"--grpc_python_out={tmp_path}", str(REPO / proto)], check=True)
    for generated in ("orchestrator_service_pb2.py", "orchestrator_service_pb2_grpc.py"):
        fresh = (tmp_path / "durabletask/internal" / generated).read_text()
        committed = (REPO / "durabletask/internal" / generated).read_text()
        assert fresh == committed, f"{generated} is stale: run `make proto`"
