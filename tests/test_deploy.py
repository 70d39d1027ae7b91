"""deploy/: the container images, the compose file and the Kubernetes manifests.

No container runtime or cluster exists here, so: hadolint lints both Dockerfiles; every manifest is
validated against the Kubernetes schemas of 1.29 and 1.37 (kubernetes-validate, offline, strict); the
manifests' cross-references (selectors, port names, claims, the HPA's target and metric) are checked
against each other; and the GPU image's entrypoint runs for real, with the tritonserver of the
nvidia-pytriton wheel standing in for the NGC one, on a cpu repository: health, metrics (GPU metrics
on), model control off, the admin APIs locked, and the Triton metrics the autoscaler and the docs
name present on a server that has served requests.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from _helpers_serving import block_labels, png_bytes, tiny_spade_card

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "deploy" / "docker"
K8S = REPO / "deploy" / "k8s"
DOC = REPO / "docs" / "deployment.md"
K8S_VERSIONS = ("1.29.0", "1.37.0")
GPU_ONLY_METRICS = {  # Triton's DCGM metrics: absent on a machine without a GPU
    "nv_gpu_utilization",
    "nv_gpu_memory_used_bytes",
    "nv_gpu_memory_total_bytes",
    "nv_gpu_power_usage",
    "nv_gpu_power_limit",
    "nv_energy_consumption",
}


def tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: pip install -e '.[dev]'")
    return found


def dockerfile_args(path: Path) -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", path.read_text(), re.M))


# ---- images ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Dockerfile.gpu", "Dockerfile.cpu"])
def test_dockerfile_passes_hadolint(name):
    out = subprocess.run([tool("hadolint"), "--no-color", str(DOCKER / name)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("name", ["Dockerfile.gpu", "Dockerfile.cpu"])
def test_images_install_from_the_lock_file_and_copy_only_what_they_ignore_not(name):
    text = (DOCKER / name).read_text()
    assert "COPY requirements-lock.txt /opt/cityserve/requirements-lock.txt" in text
    assert "-c /opt/cityserve/requirements-lock.txt" in text
    kept = [
        ln[1:].rstrip("/") for ln in (DOCKER / f"{name}.dockerignore").read_text().splitlines() if ln.startswith("!")
    ]
    for src in re.findall(r"^COPY (?:--chmod=\S+ )?([^-\s]\S*) ", text, re.M):
        if src != ".":
            assert src in kept, f"{name} copies {src}, which {name}.dockerignore leaves out"
    for needed in ("pyproject.toml", "cityserve", "models/demo", "examples"):  # the wheel's package data
        assert needed in kept


def test_gpu_image_pins_an_ngc_tag_from_the_docs_table_everywhere():
    args = dockerfile_args(DOCKER / "Dockerfile.gpu")
    tag, trt = args["NGC_TAG"], args["TENSORRT_VERSION"]
    assert "FROM nvcr.io/nvidia/tritonserver:${NGC_TAG}-py3" in (DOCKER / "Dockerfile.gpu").read_text()
    rows = [ln for ln in DOC.read_text().splitlines() if ln.startswith(f"| `{tag}-py3` |")]
    assert rows and trt in rows[0], f"docs/deployment.md has no table row for NGC {tag} with TensorRT {trt}"
    compose = (DOCKER / "compose.gpu.yaml").read_text()
    assert f"NGC_TAG:-{tag}" in compose and f"TENSORRT_VERSION:-{trt}" in compose
    gpu = next(d for d in manifests(K8S / "gpu" / "triton.yaml") if d["kind"] == "Deployment")
    assert pod_spec(gpu)["containers"][0]["image"].endswith(f":{tag}")
    entry = (DOCKER / "Dockerfile.gpu").read_text()
    assert "COPY --chmod=755 deploy/docker/entrypoint-gpu.sh /usr/local/bin/cityserve-entrypoint" in entry
    assert '"/usr/local/bin/cityserve-entrypoint"]' in entry


def test_compose_runs_one_gpu_node_with_the_canvas():
    compose = yaml.safe_load((DOCKER / "compose.gpu.yaml").read_text())
    triton, canvas = compose["services"]["triton"], compose["services"]["canvas"]
    assert triton["build"]["dockerfile"] == "deploy/docker/Dockerfile.gpu"
    assert (DOCKER / triton["build"]["context"] / triton["build"]["dockerfile"]).is_file()
    assert triton["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert {p.split(":")[0] for p in triton["ports"]} == {"8000", "8001", "8002"}
    assert any(v.endswith(":/engines") for v in triton["volumes"]) and "engines" in compose["volumes"]
    assert any(v.endswith(":/models:ro") for v in triton["volumes"])
    cmd = canvas["command"]
    assert cmd[0] == "canvas" and cmd[cmd.index("--server") + 1] == "triton:8001"
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    assert canvas["depends_on"]["triton"]["condition"] == "service_healthy"


# ---- Kubernetes -----------------------------------------------------------------------------------


def manifests(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def all_manifests() -> dict[str, list[dict]]:
    return {str(p.relative_to(K8S)): manifests(p) for p in sorted(K8S.rglob("*.yaml"))}


def pod_spec(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schemas(version):
    import kubernetes_validate

    checked = 0
    for name, docs in all_manifests().items():
        for doc in docs:
            if doc["apiVersion"].startswith("monitoring.coreos.com/"):
                continue  # a CRD: checked below
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                pytest.fail(f"{name} {doc['kind']}/{doc['metadata']['name']} (Kubernetes {version}): {e.message}")
            checked += 1
    assert checked >= 15
    # and the command-line tool the docs mention agrees
    out = subprocess.run(
        [tool("kubernetes-validate"), "--strict", "--quiet", "-k", version, *sorted(map(str, K8S.rglob("*.yaml")))],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("target", ["gpu", "cpu"])
def test_triton_deployment_probes_resources_volumes_and_services_fit_together(target):
    docs = manifests(K8S / target / "triton.yaml") + manifests(K8S / "storage.yaml") + manifests(K8S / "pdb.yaml")
    deploy = next(d for d in docs if d["kind"] == "Deployment")
    spec, labels = pod_spec(deploy), deploy["spec"]["template"]["metadata"]["labels"]
    assert deploy["spec"]["replicas"] >= 2 and deploy["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert all(labels.get(k) == v for k, v in deploy["spec"]["selector"]["matchLabels"].items())
    (container,) = spec["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in ports
    res = container["resources"]
    if target == "gpu":
        assert res["requests"]["nvidia.com/gpu"] == 1 == res["limits"]["nvidia.com/gpu"]
        # engines are built before the server listens: the startup probe waits long enough (>= 20 min)
        assert container["startupProbe"]["periodSeconds"] * container["startupProbe"]["failureThreshold"] >= 1200
    else:
        assert "nvidia.com/gpu" not in res["requests"]
    assert res["requests"]["cpu"] and res["requests"]["memory"] and res["limits"]["memory"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/models"]["readOnly"] is True and "/dev/shm" in mounts
    assert all(m["name"] in volumes for m in container["volumeMounts"])
    claims = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    for v in volumes.values():
        if "persistentVolumeClaim" in v:
            assert v["persistentVolumeClaim"]["claimName"] in claims
    if target == "gpu":
        assert mounts["/engines"]["name"] == "engines" and "readOnly" not in mounts["/engines"]
        env = {e["name"]: e for e in container["env"]}
        assert env["CITYSERVE_ENGINES"]["value"] == "/engines" and env["CITYSERVE_REPO"]["value"] == "/models"
        assert env["CITYSERVE_ADMIN_KEY"]["valueFrom"]["secretKeyRef"]["optional"] is True
        grace = spec["terminationGracePeriodSeconds"]
        assert grace > int(env["CITYSERVE_EXIT_TIMEOUT"]["value"])  # in-flight requests drain before SIGKILL
    else:
        args = container["args"]
        assert args[:3] == ["serve", "--repo", "/models"] and args[args.index("--host") + 1] == "0.0.0.0"
    services = [d for d in docs if d["kind"] == "Service"]
    assert {s["metadata"]["name"] for s in services} == {"cityserve-triton", "cityserve-triton-headless"}
    for svc in services:
        assert all(labels.get(k) == v for k, v in svc["spec"]["selector"].items())
        assert all(p["targetPort"] in ports for p in svc["spec"]["ports"])
    main = next(s for s in services if s["metadata"]["name"] == "cityserve-triton")
    assert {p["name"]: p["port"] for p in main["spec"]["ports"]} == {"http": 8000, "grpc": 8001, "metrics": 8002}
    headless = next(s for s in services if s["metadata"]["name"] == "cityserve-triton-headless")
    assert headless["spec"]["clusterIP"] == "None"
    pdb = next(d for d in docs if d["kind"] == "PodDisruptionBudget")
    assert all(labels.get(k) == v for k, v in pdb["spec"]["selector"]["matchLabels"].items())


@pytest.mark.parametrize("target", ["gpu", "cpu"])
def test_hpa_scales_the_deployment_on_a_metric_the_adapter_serves(target):
    (hpa,) = manifests(K8S / target / "hpa.yaml")
    deploy = next(d for d in manifests(K8S / target / "triton.yaml") if d["kind"] == "Deployment")
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["kind"], ref["name"]) == ("Deployment", deploy["metadata"]["name"])
    assert 1 <= hpa["spec"]["minReplicas"] <= deploy["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]
    rules = adapter_rules()
    served = {r["name"]["as"] for r in rules}
    assert {
        ("nv_inference_queue_duration_us", "render"),
        ("nv_inference_request_success", "render"),
    } <= adapter_series()
    for metric in hpa["spec"]["metrics"]:
        assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] in served
    for r in rules:
        assert set(r["resources"]["overrides"]) == {"namespace", "pod"}


def adapter_rules() -> list[dict]:
    (cm,) = manifests(K8S / "monitoring" / "prometheus-adapter.yaml")
    return yaml.safe_load(cm["data"]["config.yaml"])["rules"]


def adapter_series() -> set[tuple[str, str]]:
    """(Triton metric, model) pairs the adapter's queries read."""
    pairs = set()
    for r in adapter_rules():
        pairs |= set(re.findall(r'(nv_\w+)\{<<\.LabelMatchers>>,model="(\w+)"\}', r["metricsQuery"]))
    return pairs


def test_prometheus_finds_the_triton_pods_and_labels_them_for_the_adapter():
    services = [d for d in manifests(K8S / "gpu" / "triton.yaml") if d["kind"] == "Service"]
    svc = next(d for d in services if d["metadata"]["name"] == "cityserve-triton")
    (monitor,) = manifests(K8S / "monitoring" / "servicemonitor.yaml")
    assert monitor["kind"] == "ServiceMonitor" and monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert all(svc["metadata"]["labels"].get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in svc["spec"]["ports"]}
    headless = next(d for d in services if d["metadata"]["name"].endswith("headless"))
    assert not all(
        headless["metadata"]["labels"].get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items()
    )
    (cm,) = manifests(K8S / "monitoring" / "prometheus-scrape.yaml")
    (job,) = yaml.safe_load(cm["data"]["cityserve-scrape.yaml"])["scrape_configs"]
    relabel = {tuple(r["source_labels"]): r for r in job["relabel_configs"]}
    pod_labels = next(d for d in manifests(K8S / "gpu" / "triton.yaml") if d["kind"] == "Deployment")
    pod_labels = pod_labels["spec"]["template"]["metadata"]["labels"]
    assert (
        relabel[("__meta_kubernetes_pod_label_app_kubernetes_io_name",)]["regex"]
        == pod_labels["app.kubernetes.io/name"]
    )
    assert relabel[("__meta_kubernetes_pod_container_port_name",)]["regex"] == "metrics"
    assert {r.get("target_label") for r in job["relabel_configs"]} >= {"namespace", "pod"}


def test_canvas_reaches_triton_from_inside_its_pod():
    docs = manifests(K8S / "canvas.yaml")
    deploy = next(d for d in docs if d["kind"] == "Deployment")
    (container,) = pod_spec(deploy)["containers"]
    args = container["args"]
    assert args[0] == "canvas" and args[args.index("--host") + 1] == "0.0.0.0"
    port = int(args[args.index("--port") + 1])
    assert container["ports"][0]["containerPort"] == port == 8080
    host, grpc_port = args[args.index("--server") + 1].split(":")
    svc = next(
        d for d in manifests(K8S / "gpu" / "triton.yaml") if d["kind"] == "Service" and d["metadata"]["name"] == host
    )
    assert int(grpc_port) in {p["port"] for p in svc["spec"]["ports"] if p["name"] == "grpc"}
    svc = next(d for d in docs if d["kind"] == "Service")
    assert all(deploy["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in svc["spec"]["selector"].items())


# ---- the GPU image's entrypoint, run for real ------------------------------------------------------


@pytest.fixture(scope="module")
def cpu_repo(tmp_path_factory):
    from cityserve.export.onnx_export import export_onnx
    from cityserve.serving.repo import build_repository

    root = tmp_path_factory.mktemp("deploy")
    render_onnx = export_onnx(tiny_spade_card(root / "gen"), root / "gen" / "exported")
    return build_repository([render_onnx], "cpu", root / "repo", overrides={"intra_op_threads": 1}).path


def http(url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.mark.triton
@pytest.mark.timeout(240)
def test_gpu_entrypoint_starts_a_server_with_health_metrics_and_no_model_control(cpu_repo, tmp_path):
    import time

    import psutil

    from cityserve.client import CityserveClient
    from cityserve.serving.server import assemble_backend_dir, find_tritonserver, free_ports, server_environment

    install = find_tritonserver("bundled")  # stands in for the NGC image's /opt/tritonserver/bin/tritonserver
    env = server_environment(install)
    key = "test-admin-key"
    env.update(
        CITYSERVE_REPO=str(cpu_repo),
        CITYSERVE_ENGINES=str(tmp_path / "engines"),
        CITYSERVE_SERVED=str(tmp_path / "served"),
        CITYSERVE_ADMIN_KEY=key,
        CITYSERVE_EXIT_TIMEOUT="10",
        TRITONSERVER=str(install.binary),
    )
    hp, gp, mp = free_ports(3)
    loopback = [f"--{k}-address=127.0.0.1" for k in ("http", "grpc", "metrics")]
    backends = assemble_backend_dir(install, tmp_path / "backends")
    cmd = [str(DOCKER / "entrypoint-gpu.sh"), f"--http-port={hp}", f"--grpc-port={gp}", f"--metrics-port={mp}"]
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen(
        [*cmd, *loopback, f"--backend-directory={backends}"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{hp}"
    try:
        deadline = time.monotonic() + 150
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                if http(f"{base}/v2/health/ready")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()[-3000:]
            time.sleep(0.3)
        assert http(f"{base}/v2/health/live")[0] == 200
        # the entrypoint exec'd tritonserver (PID 1 in a container: SIGTERM reaches the server)
        me = psutil.Process(proc.pid)
        assert Path(me.exe()).resolve() == install.binary.resolve()
        args = me.cmdline()
        for flag in (
            "--allow-gpu-metrics=true",
            "--allow-metrics=true",
            "--model-control-mode=none",
            "--strict-readiness=true",
        ):
            assert flag in args
        assert f"--model-repository={tmp_path / 'served'}" in args
        # it serves, from the served copy of the repository
        ids = block_labels(3)
        with CityserveClient(f"127.0.0.1:{gp}", timeout=60) as client:
            for _ in range(3):
                assert client.label2photo(png_bytes(ids))[:8] == b"\x89PNG\r\n\x1a\n"
            assert client.render(ids[None]).shape == (1, *ids.shape, 3)
        # model control off; the admin APIs answer only to the key
        status, body = http(f"{base}/v2/repository/index", b"{}")
        assert status == 403 and "cityserve-admin-key" in body
        assert http(f"{base}/v2/systemsharedmemory/status")[0] == 403
        status, body = http(f"{base}/v2/repository/models/render/unload", b"{}", {"cityserve-admin-key": key})
        assert status != 200 and "not allowed" in body
        assert http(f"{base}/v2/repository/index", b"{}", {"cityserve-admin-key": key})[0] == 200
        # the metrics the autoscaler and the docs name, with the model label they select on
        status, text = http(f"http://127.0.0.1:{mp}/metrics")
        assert status == 200
        samples = re.findall(r'^(nv_\w+)\{[^}]*model="(\w+)"[^}]*\} ([0-9.e+]+)$', text, re.M)
        seen = {(name, model) for name, model, _ in samples}
        assert adapter_series() <= seen, adapter_series() - seen
        values = {(n, m): float(v) for n, m, v in samples}
        assert values[("nv_inference_request_success", "label2photo")] == 3
        assert values[("nv_inference_compute_infer_duration_us", "render")] > 0
        names = set(re.findall(r"^(nv_\w+)", text, re.M))
        documented = set(re.findall(r"`(nv_\w+)`", DOC.read_text()))
        assert documented and documented - GPU_ONLY_METRICS <= names, documented - GPU_ONLY_METRICS - names
        # SIGTERM: a clean stop with no process left behind
        children = me.children(recursive=True)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        psutil.wait_procs(children, timeout=10)
        assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()


def test_entrypoint_needs_no_shell_beyond_posix_sh():
    script = (DOCKER / "entrypoint-gpu.sh").read_text()
    assert script.startswith("#!/bin/sh\n") and "set -eu" in script
    assert os.access(DOCKER / "entrypoint-gpu.sh", os.X_OK)
    out = subprocess.run(["sh", "-n", str(DOCKER / "entrypoint-gpu.sh")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
