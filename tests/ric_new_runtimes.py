"""AWS's own runtime clients on the newer runtimes, as `runtime = "image"`
functions, unchanged: `aws-lambda-ric` 4.x (npm; wants Node 22 or newer) on
our nodejs22.x image, and `awslambdaric` (PyPI) on our python3.13 image.

aws-lambda-ric 4.x still has a native addon (Node-API, with bundled curl and
aws-lambda-cpp), compiled in a builder stage from our Debian base with
Debian's node 18, npm and compilers: Node-API is stable across Node majors,
so the addon built there loads in node 22 (npm warns that the package wants
node >= 22; that is only npm's engine check, not a failure). The first
build takes some minutes (apt, then the compile); Docker's layer cache makes
the later ones seconds. Its Dockerfile is tests/ric_node.py's way, with xz
(the 4.x preinstall unpacks .tar.xz sources)."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from tests.ric_node import _docker, _host_ca_bundle

NODE_RIC_VERSION = "4.0.2"           # the only 4.x on npm when written
NODE_REPOSITORY = "runtime-host-test/aws-lambda-ric4-node22"
NODE_LABEL = "runtime-host-test=aws-lambda-ric4-node22"
PYTHON_TAG = "runtime-host-test/awslambdaric-py313:latest"
PYTHON_LABEL = "runtime-host-test=awslambdaric-py313"

NODE_APP = r'''
let count = 0;
export const handler = async (event, context) => {
  count += 1;
  console.log("ric4 handler saw", JSON.stringify(event));
  if (event.fail) throw new TypeError("failing on request");
  return { ric: "node", node: process.version, event, count, request_id: context.awsRequestId,
           remaining_ms: context.getRemainingTimeInMillis() };
};
'''

NODE_DOCKERFILE = """\
FROM {debian} AS builder
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
      nodejs npm libnode-dev g++ make cmake autoconf automake libtool python3 unzip xz-utils
WORKDIR /var/ric
COPY host-ca.crt /tmp/host-ca.crt
RUN NODE_EXTRA_CA_CERTS=/tmp/host-ca.crt npm_config_nodedir=/usr \\
      npm install --no-audit --no-fund --save-exact aws-lambda-ric@{version} \\
 && test -f node_modules/aws-lambda-ric/rapid-client.node

FROM {base}
LABEL {label}
COPY --from=builder /var/ric/node_modules /var/ric/node_modules
COPY app.mjs /var/task/app.mjs
WORKDIR /var/task
ENTRYPOINT ["/var/lang/bin/node", "/var/ric/node_modules/aws-lambda-ric/index.mjs"]
CMD ["app.handler"]
"""

PYTHON_APP = '''
import sys
COUNT = 0
def handler(event, context):
    global COUNT
    COUNT += 1
    print("awslambdaric handler saw", event, flush=True)
    if event.get("fail"):
        raise RuntimeError("failing on request")
    return {"ric": "python", "python": "%d.%d" % sys.version_info[:2], "count": COUNT, "event": event,
            "request_id": context.aws_request_id, "remaining_ms": context.get_remaining_time_in_millis()}
'''


def build_node_ric4(debian: str, base: str, ctx: Path) -> str:
    ca = _host_ca_bundle()
    dockerfile = NODE_DOCKERFILE.format(debian=debian, base=base, version=NODE_RIC_VERSION, label=NODE_LABEL)
    tag = f"{NODE_REPOSITORY}:{hashlib.sha256((dockerfile + NODE_APP).encode() + ca).hexdigest()[:12]}"
    (ctx / "Dockerfile").write_text(dockerfile)
    (ctx / "app.mjs").write_text(NODE_APP)
    (ctx / "host-ca.crt").write_bytes(ca)
    for written in ctx.iterdir():
        written.chmod(0o644)          # modes are part of COPY's cache key
    _docker("build", "-q", "-t", tag, str(ctx))
    for old in _docker("images", NODE_REPOSITORY, "--format", "{{.Repository}}:{{.Tag}}").stdout.split():
        if old != tag and "<none>" not in old:
            _docker("rmi", old, check=False)
    return tag


def build_awslambdaric_py313(base: str, ctx: Path) -> str:
    wheels = ctx / "ric"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(wheels),
                    "--only-binary=:all:", "--platform", "manylinux2014_x86_64", "--python-version", "3.13",
                    "--implementation", "cp", "awslambdaric"], check=True)
    (ctx / "app.py").write_text(PYTHON_APP)
    (ctx / "Dockerfile").write_text(
        f"FROM {base}\nLABEL {PYTHON_LABEL}\nCOPY ric/ /opt/ric/\nCOPY app.py /var/task/app.py\n"
        "ENV PYTHONPATH=/opt/ric\nWORKDIR /var/task\n"
        'ENTRYPOINT ["/usr/bin/python3", "-m", "awslambdaric"]\nCMD ["app.handler"]\n')
    _docker("build", "-q", "-t", PYTHON_TAG, str(ctx))
    _docker("image", "prune", "-f", "--filter", f"label={PYTHON_LABEL}")   # the image each new download replaced
    return PYTHON_TAG


def build_functions(tmp_path_factory) -> Path:
    """ric4-node22 and ric-py313 under one parent (an event {"fail": true} makes either raise)."""
    from runtime_host.backend.docker import image_builder as images

    node = build_node_ric4(images.ensure_image("base"), images.ensure_image("nodejs22.x"),
                           tmp_path_factory.mktemp("ric4-image"))
    python = build_awslambdaric_py313(images.ensure_image("python3.13"), tmp_path_factory.mktemp("ric-py313"))
    root = tmp_path_factory.mktemp("ric-new-functions")
    for name, image in (("ric4-node22", node), ("ric-py313", python)):
        (root / name).mkdir()
        (root / name / "function.toml").write_text(
            f'runtime = "image"\nimage = "{image}"\nhandler = "app.handler"\nmemory_mb = 256\ntimeout_s = 10\n')
    return root
