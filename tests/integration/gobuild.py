"""A Go program against hostd's API, built as a control plane in Go would build its client:
stubs protoc generates here from proto/hostd.proto (Debian's protoc-gen-go and
protoc-gen-go-grpc, never committed), Debian's grpc-go and protobuf packages, offline, in GOPATH
mode (GO111MODULE=off, GOPATH with /usr/share/gocode, GOPROXY=off).

Used by test_go_client.py (tests/go), test_protocol_doc.py (PROTOCOL.md's Go block) and
bench/api (bench/api-go). Not a test module: pytest collects nothing here.
"""

import os
import shutil
import subprocess

GOCODE = "/usr/share/gocode"
NEEDED = {
    "go": "golang-go",
    "protoc": "protobuf-compiler",
    "protoc-gen-go": "protoc-gen-go",
    "protoc-gen-go-grpc": "protoc-gen-go-grpc",
}
# grpc-go's codec goes through github.com/golang/protobuf: its 1.3 package (which Debian's
# grpc also accepts) cannot unmarshal what protoc-gen-go 1.28 makes; 1.5 wraps the new API.
LIBRARIES = ["golang-google-grpc-dev", "golang-google-protobuf-dev",
             "golang-github-golang-protobuf-1-5-dev"]


def missing():
    """What this machine lacks to build such a program, as Debian package names."""
    out = [pkg for tool, pkg in NEEDED.items() if shutil.which(tool) is None]
    for pkg in LIBRARIES:
        r = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", pkg],
                           capture_output=True, text=True)
        if not r.stdout.startswith("ii"):
            out.append(pkg)
    return out


def build(source_dir, top, package, main_go, import_path, binary):
    """Build main_go (the program's text) as GOPATH package `package` under top, with the stubs
    of hostd.proto at import_path (package hostdpb), into binary. top keeps Go's build cache,
    so that later builds are quick; the stubs and the program are laid there afresh each time.
    RuntimeError with the tools' output when protoc or go fails."""
    src = os.path.join(top, "src")
    shutil.rmtree(src, ignore_errors=True)
    os.makedirs(os.path.join(src, package))
    mapping = f"Mhostd.proto={import_path};hostdpb"
    r = subprocess.run(
        ["protoc", f"--proto_path={os.path.join(source_dir, 'proto')}",
         f"--go_out={src}", f"--go_opt={mapping}",
         f"--go-grpc_out={src}", f"--go-grpc_opt={mapping}", "hostd.proto"],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError(f"protoc: {r.stderr}")
    with open(os.path.join(src, package, "main.go"), "w") as f:
        f.write(main_go)
    env = dict(os.environ, GO111MODULE="off", GOPATH=f"{top}:{GOCODE}", GOPROXY="off",
               GOFLAGS="", GOCACHE=os.path.join(top, "cache"), CGO_ENABLED="0")
    r = subprocess.run(["go", "build", "-o", binary, package], cwd=top, env=env,
                       capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError(f"go build of {package}:\n{(r.stdout + r.stderr)[-4000:]}")
