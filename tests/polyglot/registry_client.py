"""A Python client of the registry, generated from proto/ with grpcio-tools.

Proves the protos are a usable contract outside Rust: stubs compile from the
plain proto3 files, a client presenting a suite certificate calls the registry
over mutual TLS, and errors are told apart by their google.rpc.ErrorInfo
reason, not by parsing text.

usage: registry_client.py ADDR PKI_DIR
"""

import pathlib
import subprocess
import sys
import tempfile

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

ROOT = pathlib.Path(__file__).resolve().parents[2]


def generate_stubs(out: pathlib.Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'proto'}",
         f"--python_out={out}", f"--grpc_python_out={out}",
         "locksmith/registry/v1/registry.proto"],
        check=True,
    )
    sys.path.insert(0, str(out))


def channel(addr: str, pki: pathlib.Path, cert: str, key: str) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(
        root_certificates=(pki / "ca.pem").read_bytes(),
        private_key=(pki / key).read_bytes(),
        certificate_chain=(pki / cert).read_bytes(),
    )
    return grpc.secure_channel(addr, creds, options=[("grpc.ssl_target_name_override", "localhost")])


def reason(err: grpc.RpcError) -> str:
    status = rpc_status.from_call(err)
    for detail in status.details if status else []:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    return ""


def main(addr: str, pki_dir: str) -> int:
    pki = pathlib.Path(pki_dir)
    with tempfile.TemporaryDirectory() as out:
        generate_stubs(pathlib.Path(out))
        from locksmith.registry.v1 import registry_pb2 as pb
        from locksmith.registry.v1 import registry_pb2_grpc as rpc

        results = []

        def check(name: str, ok: bool) -> None:
            print(f"polyglot: {name}: {'ok' if ok else 'FAILED'}")
            results.append(ok)

        edge = rpc.TenantRegistryServiceStub(channel(addr, pki, "edge.pem", "edge-key.pem"))
        made = edge.CreateTenant(pb.CreateTenantRequest(tenant=pb.Tenant(id="py-tenant", display_name="From Python")))
        check("create as edge", made.tenant.version == 1 and made.tenant.status == pb.TENANT_STATUS_ACTIVE)

        try:
            edge.CreateTenant(pb.CreateTenantRequest(tenant=pb.Tenant(id="py-tenant", display_name="Again")))
            check("duplicate refused", False)
        except grpc.RpcError as err:
            check("duplicate refused", err.code() == grpc.StatusCode.ALREADY_EXISTS and reason(err) == "ALREADY_EXISTS")

        try:
            edge.GetTenant(pb.GetTenantRequest(tenant_id="Bad/Id"))
            check("bad id refused", False)
        except grpc.RpcError as err:
            check("bad id refused", err.code() == grpc.StatusCode.INVALID_ARGUMENT and reason(err) == "INVALID_ARGUMENT")

        proxy = rpc.TenantRegistryServiceStub(channel(addr, pki, "proxy.pem", "proxy-key.pem"))
        try:
            proxy.DeleteTenant(pb.DeleteTenantRequest(tenant_id="py-tenant"))
            check("proxy may not delete", False)
        except grpc.RpcError as err:
            check("proxy may not delete", err.code() == grpc.StatusCode.PERMISSION_DENIED)
        check("proxy may read", proxy.GetTenant(pb.GetTenantRequest(tenant_id="py-tenant")).tenant.display_name == "From Python")

        failed = results.count(False)
        print(f"polyglot: {len(results) - failed} passed, {failed} failed")
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
