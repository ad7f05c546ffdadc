"""AWS's Node runtime interface client (`aws-lambda-ric` on npm) as a test
function of `runtime = "image"`, beside the Python one (awslambdaric) in
conftest.py: our nodejs18.x image plus the RIC, whose native addon (bundled
curl and aws-lambda-cpp) is compiled in a builder stage with Debian's tools.

The Dockerfile and its context are the same on every run (no per-run input),
so after the first build (a few minutes: apt, npm, the compile) Docker's layer
cache makes each build take seconds. Its inputs are our base and nodejs18.x
image tags, the text below and the host's CA bundle (only npm sees it)."""
from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

RIC_VERSION = "3.3.0"        # the only 3.3.x; 4.x wants Node >= 22
REPOSITORY = "runtime-host-test/aws-lambda-ric-node"
LABEL = "runtime-host-test=aws-lambda-ric-node"
BUILDER_LABEL = "runtime-host-test.aws-lambda-ric-node-builder"

# One module, three handlers; the folders below differ only in `handler`,
# which the host hands an image function as its command (the image's CMD).
NODE_RIC_APP = r'''
const crypto = require("crypto");
const INSTANCE = crypto.randomUUID();   // one per process: a warm invocation sees the same one
let count = 0;

exports.handler = async (event, context) => {
  count += 1;
  console.log("node ric handler saw", JSON.stringify(event));
  return {
    ric: "node", event, request_id: context.awsRequestId,
    remaining_ms: context.getRemainingTimeInMillis(),
    pid: process.pid, instance: INSTANCE, count,
  };
};

exports.fail = async () => {
  throw new Error("failing on request");
};

exports.stream = awslambda.streamifyResponse(async (event, responseStream, context) => {
  responseStream.setContentType("text/plain");
  responseStream.write("first ");
  await new Promise((r) => setTimeout(r, 1000));
  responseStream.write("second");
  responseStream.end();
});
'''

# The builder stage starts from our Debian base, not from nodejs18.x, so a
# change to our Node runtime (a new nodejs18.x tag) rebuilds only the final
# stage, in seconds; its Node is the same Debian nodejs 18 (and the addon uses
# Node-API, stable across 18.x). Debian's nodejs has no npm: npm is its own
# package. libnode-dev gives node-gyp Node's headers (npm_config_nodedir=/usr),
# so it downloads none. npm's TLS trusts the host's CA bundle (host-ca.crt): an
# egress proxy may re-sign the registry's certificate. The RIC's postinstall
# means to remove the unpacked curl and aws-lambda-cpp sources (145 MB), but
# its glob `*[^gz]` is bash's, not dash's: under Debian's /bin/sh it removes
# the tarballs instead, so the sources are removed here. The builder's last
# line labels only its leaf image (no cache key above it changes).
BUILDER_STAGE = """\
FROM {debian} AS builder
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
      nodejs npm libnode-dev g++ make cmake autoconf automake libtool python3 unzip
WORKDIR /var/ric
COPY host-ca.crt /tmp/host-ca.crt
RUN NODE_EXTRA_CA_CERTS=/tmp/host-ca.crt npm_config_nodedir=/usr \\
      npm install --no-audit --no-fund --save-exact aws-lambda-ric@{version} \\
 && rm -rf node_modules/aws-lambda-ric/deps/aws-lambda-cpp-* node_modules/aws-lambda-ric/deps/curl-* \\
 && test -f node_modules/aws-lambda-ric/dist/rapid-client.node
"""

FINAL_STAGE = """\
FROM {base}
LABEL {label}
COPY --from=builder /var/ric/node_modules /var/ric/node_modules
COPY app.js /var/task/app.js
WORKDIR /var/task
ENTRYPOINT ["/usr/bin/node", "/var/ric/node_modules/aws-lambda-ric/bin/index.mjs"]
CMD ["app.handler"]
"""

FUNCTIONS = {"node-ric": "app.handler", "node-ric-fail": "app.fail", "node-ric-stream": "app.stream"}


def _host_ca_bundle() -> bytes:
    for candidate in (os.environ.get("SSL_CERT_FILE"), os.environ.get("NODE_EXTRA_CA_CERTS"),
                      "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate).read_bytes()
    return b""      # Node then keeps its own roots (and warns that the file held none)


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:2])} failed ({result.returncode}):\n"
                           f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def build_node_ric_image(debian: str, base: str, ctx: Path) -> str:
    """Builds (or finds in the layer cache) the image from a context written
    to the empty folder `ctx`: the builder stage FROM `debian`, the image
    FROM `base` (the nodejs18.x image). Returns its tag."""
    ca = _host_ca_bundle()
    builder = BUILDER_STAGE.format(debian=debian, version=RIC_VERSION)
    builder_key = hashlib.sha256(builder.encode() + ca).hexdigest()[:12]
    dockerfile = (builder + f"LABEL {BUILDER_LABEL}={builder_key}\n\n"
                  + FINAL_STAGE.format(base=base, label=LABEL))
    tag = f"{REPOSITORY}:{hashlib.sha256((dockerfile + NODE_RIC_APP).encode()).hexdigest()[:12]}"
    (ctx / "Dockerfile").write_text(dockerfile)
    (ctx / "app.js").write_text(NODE_RIC_APP)
    (ctx / "host-ca.crt").write_bytes(ca)
    for written in ctx.iterdir():
        written.chmod(0o644)     # modes are part of COPY's cache key: not the umask's
    _docker("build", "-q", "-t", tag, str(ctx))
    # Leftovers of older inputs: images of this repository under another tag,
    # final images left untagged, and builder stages of another key.
    for old in _docker("images", REPOSITORY, "--format", "{{.Repository}}:{{.Tag}}").stdout.split():
        if old != tag and "<none>" not in old:
            _docker("rmi", old, check=False)       # one a container still uses stays
    _docker("image", "prune", "-f", "--filter", f"label={LABEL}")
    _docker("image", "prune", "-f", "--filter", f"label={BUILDER_LABEL}",
            "--filter", f"label!={BUILDER_LABEL}={builder_key}")
    return tag


def build_node_ric_function(tmp_path_factory) -> Path:
    """The image, and a folder per handler (node-ric, node-ric-fail,
    node-ric-stream) under one parent; returns the parent."""
    from runtime_host.backend.docker import image_builder as images

    tag = build_node_ric_image(images.ensure_image("base"), images.ensure_image("nodejs18.x"),
                               tmp_path_factory.mktemp("node-ric-image"))
    root = tmp_path_factory.mktemp("node-ric-functions")
    for name, handler in FUNCTIONS.items():
        (root / name).mkdir()
        (root / name / "function.toml").write_text(
            f'runtime = "image"\nimage = "{tag}"\nhandler = "{handler}"\nmemory_mb = 256\ntimeout_s = 10\n')
    return root
