"""The Kubernetes files (deploy/, docs/kubernetes.md), checked without a cluster.

Nothing here applies a manifest or renders a chart: the files are parsed and compared with what the
code and the production profile expect (settings, routes, endpoints.prod.yml, bot/supervisor.py).
Where the Rasa chart matters, `render_endpoints` does what the chart's templates/config-map.yaml does
with our values (github.com/RasaHQ/helm-charts, charts/rasa).
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import fields
from pathlib import Path
from typing import Dict, Iterable, List
from urllib.parse import urlsplit

import pytest
import yaml

from bot.settings import ENV_NAMES, ROOT, Settings, load_settings

DEPLOY = ROOT / "deploy"
GATEWAY_YAML = DEPLOY / "k8s" / "gateway.yaml"
RASA_VALUES = DEPLOY / "helm" / "rasa-values.yaml"
ACTION_VALUES = DEPLOY / "helm" / "action-server-values.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
DOC = ROOT / "docs" / "kubernetes.md"

SETTINGS = set(ENV_NAMES.values())
# Variables that are not gateway settings but that Rasa, rasa_sdk or endpoints.prod.yml read.
RASA_VARIABLES = {
    "RASA_AUTH_TOKEN",  # --auth-token $(RASA_AUTH_TOKEN): the chart defines RASA_TOKEN itself
    "GATEWAY_URL", "ACTION_SERVER_URL",  # endpoints.prod.yml: nlg, action_endpoint
    "RASA_TRACKER_HOST", "RASA_TRACKER_PORT", "RASA_TRACKER_DB", "RASA_TRACKER_USER", "RASA_TRACKER_PASSWORD",
    "REDIS_HOST", "REDIS_PORT", "REDIS_DB", "REDIS_PASSWORD",
    "RABBITMQ_HOST", "RABBITMQ_PORT", "RABBITMQ_USER", "RABBITMQ_PASSWORD",
    "TICKET_LOCK_LIFETIME",  # rasa/core/lock_store.py
    "SANIC_WORKERS",  # Rasa server workers
    "ACTION_SERVER_SANIC_WORKERS",  # rasa_sdk workers
}
# The chart sets ACTION_SERVER_URL itself from rasa-action-server.external.url.
CHART_PROVIDED = {"ACTION_SERVER_URL"}

# Defaults of the chart's applicationSettings.endpoints (charts/rasa/values.yaml) that our values merge
# into: a default our values do not override or delete (null) ends up in Rasa's endpoints.
CHART_ENDPOINT_DEFAULTS = {
    "models": {"enabled": False, "url": "http://my-server.com/models/default", "token": "token",
               "waitTimeBetweenPulls": 20, "useRasaXasModelServer": {"enabled": False, "tag": "production"}},
    "trackerStore": {"enabled": True, "type": "sql", "dialect": "postgresql", "url": "${DB_HOST}",
                     "port": "${DB_PORT}", "username": "${DB_USER}", "password": "${DB_PASSWORD}",
                     "db": "${DB_DATABASE}", "login_db": "${DB_DATABASE}"},
    "lockStore": {"enabled": False, "type": "redis", "url": "${REDIS_HOST}", "port": "${REDIS_PORT}",
                  "password": "${REDIS_PASSWORD}", "db": "1"},
    "eventBroker": {"enabled": False, "type": "pika", "url": "${RABBITMQ_HOST}", "username": "${RABBITMQ_USERNAME}",
                    "password": "${RABBITMQ_PASSWORD}", "port": "${RABBITMQ_PORT}",
                    "queues": ["rasa_production_events"]},
    "action": {"endpointURL": "/webhook"},
    "additionalEndpoints": {},
}
# Where the chart mounts its ConfigMap and where its init container writes the initial model.
CHART_ENDPOINTS_PATH = "/app/endpoints.yml"
CHART_CREDENTIALS_PATH = "/app/credentials.yml"
CHART_MODELS_DIR = "/app/models/"

PLACEHOLDER = "REPLACE_ME"
FILLED = "filled-in-for-the-test-0123456789abcdef"  # 32+ characters: a valid DATA_KEYS too

# Public paths (docs/kubernetes.md): exact paths, and prefixes.
PUBLIC_EXACT = {"/", "/telegram/webhook", "/whatsapp/webhook"}
PUBLIC_PREFIXES = ("/webchat/", "/static/", "/console")
NEVER_PUBLIC = ["/metrics", "/nlg", "/health", "/ready"]


# -- reading the files ------------------------------------------------------------------------------
def documents(path: Path) -> List[dict]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def values(path: Path) -> dict:
    (only,) = documents(path)
    return only


def manifest(kind: str, name: str) -> dict:
    found = [d for d in documents(GATEWAY_YAML) if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} in {GATEWAY_YAML.name}"
    return found[0]


def of_kind(kind: str) -> List[dict]:
    return [d for d in documents(GATEWAY_YAML) if d["kind"] == kind]


def gateway_container() -> dict:
    (container,) = manifest("Deployment", "crossroads-gateway")["spec"]["template"]["spec"]["containers"]
    return container


def config_data() -> Dict[str, str]:
    return manifest("ConfigMap", "crossroads-config")["data"]


def secret_data(name: str) -> Dict[str, str]:
    return manifest("Secret", name)["stringData"]


def routes() -> List[str]:
    """Paths the gateway serves: Route(...)/Mount(...) in bot/app.py and the console's routes."""
    found = []
    for source in (ROOT / "bot" / "app.py", ROOT / "bot" / "console" / "api.py"):
        text = source.read_text(encoding="utf-8")
        found += re.findall(r'\bRoute\(\s*"(/[^"]*)"', text)
        found += [m.rstrip("/") + "/any-file" for m in re.findall(r'\bMount\(\s*"(/[^"]*)"', text)]
        found += re.findall(r'\br\(\s*"(/[^"]*)"', text)  # the console's helper around Route
    return sorted(set(found))


def env_names(env: Iterable[dict]) -> List[str]:
    return [e["name"] for e in env]


def filled(value: str) -> str:
    return value.replace(PLACEHOLDER, FILLED)


def resolve(env: Iterable[dict]) -> Dict[str, str]:
    """A container's environment, with the Secret templates' placeholders filled in."""
    resolved = {}
    for item in env:
        if "value" in item:
            resolved[item["name"]] = str(item["value"])
            continue
        source = item["valueFrom"]
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            resolved[item["name"]] = filled(secret_data(ref["name"])[ref["key"]])
        else:
            ref = source["configMapKeyRef"]
            assert ref["name"] == "crossroads-config"
            resolved[item["name"]] = config_data()[ref["key"]]
    return resolved


def gateway_environment() -> Dict[str, str]:
    env: Dict[str, str] = {}
    for source in gateway_container()["envFrom"]:
        if "configMapRef" in source:
            assert source["configMapRef"]["name"] == "crossroads-config"
            env.update(config_data())
        else:
            env.update({k: filled(v) for k, v in secret_data(source["secretRef"]["name"]).items()})
    return env


def helm_merge(defaults: dict, overrides: dict) -> dict:
    """Helm's coalescing of a chart's defaults with user values: null deletes a default key."""
    merged = copy.deepcopy(defaults)
    for key, value in overrides.items():
        if value is None and key in merged:
            del merged[key]
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = helm_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def go_print(value) -> str:
    """How `{{ $value }}` prints a value in a Helm template."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "<no value>"
    if isinstance(value, list):
        return "[" + " ".join(go_print(v) for v in value) + "]"
    return str(value)


def render_endpoints(rasa: dict) -> str:
    """The `endpoints` key of the Rasa chart's ConfigMap (templates/config-map.yaml), as text."""
    endpoints = helm_merge(CHART_ENDPOINT_DEFAULTS, rasa["applicationSettings"]["endpoints"])
    lines = []
    assert not endpoints["models"]["enabled"], "a model server is configured, but the model comes from initialModel"
    for chart_key, rasa_key in (("trackerStore", "tracker_store"), ("lockStore", "lock_store"),
                                ("eventBroker", "event_broker")):
        section = endpoints[chart_key]
        if not section.get("enabled"):
            continue
        lines.append(f"{rasa_key}:")
        for key in sorted(section):  # Go ranges over a map in key order
            if key == "enabled":
                continue
            value = section[key]
            if chart_key == "trackerStore" and isinstance(value, dict):
                lines.append(f"  {key}:")
                lines += ["    " + line for line in yaml.safe_dump(value).splitlines()]
            else:
                lines.append(f"  {key}: {go_print(value)}")
    actions = rasa["rasa-action-server"]
    if actions.get("install") or (actions["external"]["enabled"] and actions["external"]["url"]):
        lines += ["action_endpoint:", "  url: ${ACTION_SERVER_URL}"]
    if endpoints["additionalEndpoints"]:
        lines += yaml.safe_dump(endpoints["additionalEndpoints"], sort_keys=False).splitlines()
    return "\n".join(lines) + "\n"


def flags(command: List[str]) -> List[str]:
    return [c for c in command if c.startswith("-")]


def option(command: List[str], name: str) -> str:
    return command[command.index(name) + 1]


@pytest.fixture
def settings(tmp_path):
    return load_settings(gateway_environment(), env_file=tmp_path / "absent.env")


# -- the files parse ----------------------------------------------------------------------------------
def test_every_yaml_document_parses_and_names_itself():
    for path in (GATEWAY_YAML, RASA_VALUES, ACTION_VALUES):
        docs = documents(path)
        assert docs, path
        assert all(isinstance(d, dict) for d in docs), path
    for doc in documents(GATEWAY_YAML):
        assert doc.get("apiVersion") and doc.get("kind") and doc["metadata"].get("name"), doc
    kinds = {d["kind"] for d in documents(GATEWAY_YAML)}
    assert {"ConfigMap", "Secret", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
            "Ingress"} <= kinds


# -- environment variables ----------------------------------------------------------------------------
def test_every_gateway_variable_is_a_setting():
    for name in list(config_data()) + list(secret_data("crossroads-secrets")):
        assert name in SETTINGS, f"{name} is not a setting of bot/settings.py"
    assert "env" not in gateway_container() or set(env_names(gateway_container()["env"])) <= SETTINGS


def test_every_rasa_and_action_server_variable_is_a_setting_or_a_known_rasa_variable():
    for path in (RASA_VALUES, ACTION_VALUES):
        for name in env_names(values(path)["extraEnv"]):
            assert name in SETTINGS | RASA_VARIABLES, f"{path.name}: {name} is neither a setting nor read by Rasa"
    for name in secret_data("crossroads-rasa-secrets"):
        assert name in RASA_VARIABLES, name


def test_every_reference_names_an_existing_key():
    for path in (RASA_VALUES, ACTION_VALUES):
        for item in values(path)["extraEnv"]:
            ref = item.get("valueFrom", {})
            if "secretKeyRef" in ref:
                assert ref["secretKeyRef"]["key"] in secret_data(ref["secretKeyRef"]["name"]), item
            elif "configMapKeyRef" in ref:
                assert ref["configMapKeyRef"]["key"] in config_data(), item
            else:
                assert "value" in item, item
    for source in gateway_container()["envFrom"]:
        ref = source.get("configMapRef") or source.get("secretRef")
        kind = "ConfigMap" if "configMapRef" in source else "Secret"
        manifest(kind, ref["name"])


def test_the_gateway_and_the_action_server_load_their_settings(tmp_path):
    gateway = load_settings(gateway_environment(), env_file=tmp_path / "absent.env")
    assert gateway.log_format == "json"
    assert gateway.database_url.startswith("postgresql://")
    assert gateway.tracker_store_url.startswith("postgresql://")
    assert gateway.metrics_token is not None
    assert gateway.console_secure_cookie is True
    actions = load_settings(resolve(values(ACTION_VALUES)["extraEnv"]), env_file=tmp_path / "absent.env")
    assert actions.database_url == gateway.database_url
    assert actions.data_keys.reveal() == gateway.data_keys.reveal()
    assert (actions.counsellor_hours, actions.counsellor_timezone) == (gateway.counsellor_hours,
                                                                     gateway.counsellor_timezone)


def test_rasa_gets_the_gateways_tokens():
    rasa = values(RASA_VALUES)
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in rasa["extraEnv"] if "valueFrom" in e}
    token_variable = re.fullmatch(r"\$\((\w+)\)", option(rasa["args"], "--auth-token")).group(1)
    assert refs[token_variable] == {"name": "crossroads-secrets", "key": "RASA_TOKEN"}
    assert refs["PSEUDONYM_KEY"] == {"name": "crossroads-secrets", "key": "PSEUDONYM_KEY"}
    # Rasa renders answers itself (bot.rasa_nlg.ContentNLG): it holds no token for the gateway's /nlg.
    assert "NLG_TOKEN" not in refs


def test_rasa_renders_answers_from_the_content_files_in_the_image():
    rendered = yaml.safe_load(render_endpoints(values(RASA_VALUES)))
    assert rendered["nlg"] == {"type": "bot.rasa_nlg.ContentNLG"}
    ignored = DOCKERIGNORE.read_text(encoding="utf-8").split()
    assert not {"data", "data/", "data/content", "data/content/"} & set(ignored)
    assert sorted((ROOT / "data" / "content").glob("*.yml"))


# -- secrets --------------------------------------------------------------------------------------------
def test_the_secret_templates_hold_placeholders_only():
    secrets = of_kind("Secret")
    assert secrets
    for secret in secrets:
        assert "data" not in secret, "use stringData with placeholders, never encoded values"
        for key, value in secret["stringData"].items():
            value = str(value)
            if "://" in value:
                assert urlsplit(value).password == PLACEHOLDER, f"{key}: the password must be {PLACEHOLDER}"
            else:
                assert value in ("", PLACEHOLDER), f"{key}: {PLACEHOLDER} or empty, nothing else"


def test_the_secret_templates_stay_out_of_a_plain_apply():
    """`kubectl apply -l 'crossroads/template!=true'` must skip exactly the Secret templates."""
    for doc in documents(GATEWAY_YAML):
        marked = doc["metadata"].get("labels", {}).get("crossroads/template") == "true"
        assert marked == (doc["kind"] == "Secret"), doc["metadata"]["name"]


def test_no_required_secret_is_missing_from_the_template():
    required = {ENV_NAMES[f.name] for f in fields(Settings) if f.metadata["default"] is None
                and not f.metadata["optional"]}
    assert required <= set(secret_data("crossroads-secrets"))


# -- probes, metrics, ingress -------------------------------------------------------------------------
def test_probe_and_metrics_paths_are_routes_of_the_gateway():
    served = routes()
    container = gateway_container()
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"] in served, probe
        assert container[probe]["httpGet"]["port"] in [p["name"] for p in container["ports"]]
    annotations = manifest("Deployment", "crossroads-gateway")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics" and "/metrics" in served
    assert int(annotations["prometheus.io/port"]) == container["ports"][0]["containerPort"]


def _exposed(path: str, rules: List[dict]) -> bool:
    for rule in rules:
        if rule["pathType"] == "Exact" and path == rule["path"]:
            return True
        if rule["pathType"] == "Prefix":
            prefix = rule["path"].rstrip("/")
            if prefix == "" or path == prefix or path.startswith(prefix + "/"):
                return True
    return False


def _ingress_rules() -> List[dict]:
    rules = []
    for ingress in of_kind("Ingress"):
        for rule in ingress["spec"]["rules"]:
            rules += rule["http"]["paths"]
    return rules


def test_the_ingress_exposes_only_the_public_paths():
    rules = _ingress_rules()
    assert rules
    served = routes()
    for rule in rules:
        # ImplementationSpecific may be a regex or a prefix, depending on the controller.
        assert rule["pathType"] in ("Exact", "Prefix"), rule
        assert not (rule["pathType"] == "Prefix" and rule["path"].rstrip("/") == ""), "Prefix / routes everything"
        assert any(_exposed(p, [rule]) for p in served), f"{rule['path']} matches no route of the gateway"
    for path in NEVER_PUBLIC:
        assert path in served, f"{path} is no longer a route: update this test"
        assert not _exposed(path, rules), f"the Ingress exposes {path}"
    for path in served:
        if _exposed(path, rules):
            assert path in PUBLIC_EXACT or path.startswith(PUBLIC_PREFIXES), f"the Ingress exposes {path}"
    for path in ("/", "/telegram/webhook", "/whatsapp/webhook", "/webchat/api/message", "/static/any-file",
                 "/console", "/console/api/login"):
        assert _exposed(path, rules), f"{path} should be public"


def test_the_ingress_sends_to_the_gateway_service():
    service = manifest("Service", "crossroads-gateway")
    ports = {p["name"] for p in service["spec"]["ports"]}
    for rule in _ingress_rules():
        backend = rule["backend"]["service"]
        assert backend["name"] == "crossroads-gateway" and backend["port"]["name"] in ports
    container = gateway_container()
    assert service["spec"]["selector"].items() <= \
        manifest("Deployment", "crossroads-gateway")["spec"]["template"]["metadata"]["labels"].items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= {p["name"] for p in container["ports"]}


def test_telegram_uses_the_webhook_behind_the_ingress():
    """With several replicas, polling would have each replica call getUpdates (Telegram refuses)."""
    url = urlsplit(config_data()["TELEGRAM_WEBHOOK_URL"])
    hosts = {rule["host"] for ingress in of_kind("Ingress") for rule in ingress["spec"]["rules"]}
    assert url.scheme == "https" and url.hostname in hosts
    assert url.path == "/telegram/webhook" and _exposed(url.path, _ingress_rules())


# -- Rasa ----------------------------------------------------------------------------------------------
def test_rasa_endpoints_are_those_of_endpoints_prod():
    prod = yaml.safe_load((ROOT / "endpoints.prod.yml").read_text(encoding="utf-8"))
    text = render_endpoints(values(RASA_VALUES))
    rendered = yaml.safe_load(text)
    for key, kind in (("tracker_store", "bot.rasa_tracker_store.SQLTrackerStore"), ("lock_store", "redis"),
                      ("event_broker", "bot.event_broker.AnalyticsEventBroker")):
        assert rendered[key]["type"] == prod[key]["type"] == kind, key
    for key in ("tracker_store", "lock_store", "event_broker", "nlg", "action_endpoint"):
        assert rendered[key] == prod[key], key
    assert set(rendered) == set(prod)
    # Rasa expands ${VARS} only in plain (unquoted) values.
    assert not re.search(r"[\"']\$\{", text), text


def test_every_class_the_rasa_endpoints_name_is_in_the_image():
    rendered = yaml.safe_load(render_endpoints(values(RASA_VALUES)))
    classes = [section["type"] for section in rendered.values() if str(section.get("type", "")).startswith("bot.")]
    assert classes
    for name in classes:
        module, cls = name.rsplit(".", 1)
        source = ROOT.joinpath(*module.split(".")).with_suffix(".py")
        assert source.is_file(), name
        assert re.search(rf"^class {cls}\b", source.read_text(encoding="utf-8"), re.MULTILINE), name
    ignored = DOCKERIGNORE.read_text(encoding="utf-8").split()
    assert "bot" not in ignored and "bot/" not in ignored


def test_every_variable_of_the_rasa_endpoints_is_set():
    rasa = values(RASA_VALUES)
    defined = set(env_names(rasa["extraEnv"])) | CHART_PROVIDED
    used = set(re.findall(r"\$\{(\w+)\}", render_endpoints(rasa)))
    assert used and used <= defined, f"unset: {sorted(used - defined)}"


def test_rasa_credentials_name_our_channel_only():
    prod = yaml.safe_load((ROOT / "credentials.yml").read_text(encoding="utf-8"))
    credentials = values(RASA_VALUES)["applicationSettings"]["credentials"]
    assert credentials["enabled"] is True
    assert set(credentials["additionalChannelCredentials"]) == set(prod) == {"bot.rasa_channel.GatewayInput"}


def test_rasa_runs_as_the_production_profile_does(settings):
    from bot.supervisor import prod_commands

    profile = next(p.command for p in prod_commands(settings, Path("/m.tar.gz")) if p.name == "rasa-1")
    rasa = values(RASA_VALUES)
    ours = rasa["command"] + rasa["args"]
    assert ours[:2] == ["rasa", "run"] and Path(profile[0]).name == "rasa" and profile[1] == "run"
    # --interface 127.0.0.1 would make the pod unreachable; everything else is the same.
    assert "--interface" not in ours
    assert set(flags(ours)) == set(flags(profile)) - {"--interface"}
    assert option(profile, "--endpoints") == "endpoints.prod.yml"
    assert option(ours, "--endpoints") == CHART_ENDPOINTS_PATH
    assert option(ours, "--credentials") == CHART_CREDENTIALS_PATH
    assert option(ours, "--model").startswith(CHART_MODELS_DIR)
    assert int(option(ours, "--port")) == rasa["applicationSettings"]["port"]


def test_rasa_gets_its_model_from_the_chart_and_is_ready_only_with_it():
    rasa = values(RASA_VALUES)
    app = rasa["applicationSettings"]
    assert app["initialModel"].endswith(".tar.gz") and not app["trainInitialModel"]
    assert not app["endpoints"]["models"]["enabled"]  # the chart downloads initialModel only then
    command = rasa["readinessProbe"]["exec"]["command"]
    assert command[:2] == ["python", "-c"]
    compile(command[2], "readinessProbe", "exec")
    assert f"127.0.0.1:{app['port']}/status" in command[2]
    (variable,) = re.findall(r"os\.environ\['(\w+)'\]", command[2])
    assert variable == re.fullmatch(r"\$\((\w+)\)", option(rasa["args"], "--auth-token")).group(1)
    assert rasa["livenessProbe"]["httpGet"]["path"] == "/"


def test_rasa_lock_lifetime_and_workers():
    env = {e["name"]: e.get("value") for e in values(RASA_VALUES)["extraEnv"]}
    assert int(env["TICKET_LOCK_LIFETIME"]) > 0
    assert env["SANIC_WORKERS"] == "1"


def test_the_rasa_chart_installs_no_stores_and_no_v2beta1_autoscaler():
    rasa = values(RASA_VALUES)
    for store in ("postgresql", "redis", "rabbitmq"):
        assert rasa[store]["install"] is False, store
    assert rasa["autoscaling"]["enabled"] is False, "the chart's HPA template is autoscaling/v2beta1"
    assert rasa["nginx"]["enabled"] is False
    assert rasa["applicationSettings"]["telemetry"]["enabled"] is False


# -- the action server ----------------------------------------------------------------------------------
def test_the_action_server_runs_as_the_production_profile_does(settings):
    from rasa_sdk.constants import ENV_SANIC_WORKERS

    from bot.supervisor import prod_commands

    profile = next(p.command for p in prod_commands(settings, Path("/m.tar.gz")) if p.name == "actions")
    actions = values(ACTION_VALUES)
    ours = actions["command"] + actions["args"]
    assert ours[:5] == ["rasa", "run", "actions", "--actions", "actions"]
    assert set(flags(ours)) == set(flags(profile))
    assert int(option(ours, "--port")) == actions["applicationSettings"]["port"]
    workers = {e["name"]: e.get("value") for e in actions["extraEnv"]}.get(ENV_SANIC_WORKERS)
    assert workers is not None and int(workers) >= 1, f"rasa_sdk reads {ENV_SANIC_WORKERS}"


# -- the gateway ----------------------------------------------------------------------------------------
def test_the_gateway_runs_as_the_production_profile_does(settings):
    from bot.supervisor import prod_commands

    profile = next(p.command for p in prod_commands(settings, Path("/m.tar.gz")) if p.name == "gateway")
    container = gateway_container()
    ours = container["command"]
    assert ours[0] == "python"
    expected = list(profile[1:])
    expected[expected.index("--host") + 1] = "0.0.0.0"
    expected[expected.index("--port") + 1] = str(container["ports"][0]["containerPort"])
    assert ours[1:] == expected
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    (cmd,) = re.findall(r"^CMD (\[.*\])\s*$", text, re.MULTILINE)
    assert json.loads(cmd) == ours, "the image's default command is the gateway's"


# -- how the parts find each other ----------------------------------------------------------------------
def test_the_services_find_each_other():
    rasa, actions = values(RASA_VALUES), values(ACTION_VALUES)
    rasa_url = urlsplit(config_data()["RASA_URL"])
    assert (rasa_url.hostname, rasa_url.port) == (rasa["fullnameOverride"], rasa["applicationSettings"]["port"])
    # Rasa does not call the gateway back (answers are rendered in the Rasa pod, bot.rasa_nlg.ContentNLG).
    assert "GATEWAY_URL" not in {e["name"] for e in rasa["extraEnv"]}
    action_url = urlsplit(rasa["rasa-action-server"]["external"]["url"])
    assert rasa["rasa-action-server"]["install"] is False
    assert (action_url.hostname, action_url.port, action_url.path) == (actions["fullnameOverride"],
                                                                       actions["service"]["port"], "/webhook")
    assert actions["service"]["port"] == actions["applicationSettings"]["port"]


def test_the_gateway_purges_the_tracker_store_rasa_writes():
    tracker = urlsplit(filled(secret_data("crossroads-secrets")["TRACKER_STORE_URL"]))
    env = {e["name"]: e.get("value") for e in values(RASA_VALUES)["extraEnv"]}
    assert (tracker.hostname, str(tracker.port), tracker.path.lstrip("/"), tracker.username) == (
        env["RASA_TRACKER_HOST"], env["RASA_TRACKER_PORT"], env["RASA_TRACKER_DB"], env["RASA_TRACKER_USER"])


def test_one_image_for_gateway_rasa_and_actions():
    images = {gateway_container()["image"]}
    for path in (RASA_VALUES, ACTION_VALUES):
        image = values(path)["image"]
        images.add(f"{image['repository']}:{image['tag']}")
    assert len(images) == 1, images


# -- scaling --------------------------------------------------------------------------------------------
def test_at_least_two_replicas_of_the_gateway_and_of_rasa():
    assert manifest("Deployment", "crossroads-gateway")["spec"]["replicas"] >= 2
    rasa = values(RASA_VALUES)
    assert rasa["replicaCount"] >= 2
    assert values(ACTION_VALUES)["replicaCount"] >= 2
    targets = {hpa["spec"]["scaleTargetRef"]["name"]: hpa["spec"] for hpa in of_kind("HorizontalPodAutoscaler")}
    for name in ("crossroads-gateway", rasa["fullnameOverride"]):
        assert targets[name]["minReplicas"] >= 2, name
        assert targets[name]["maxReplicas"] >= targets[name]["minReplicas"]
    for hpa in of_kind("HorizontalPodAutoscaler"):
        assert hpa["apiVersion"] == "autoscaling/v2"


def test_the_disruption_budgets_select_the_pods():
    rasa, actions = values(RASA_VALUES), values(ACTION_VALUES)
    gateway = manifest("Deployment", "crossroads-gateway")["spec"]["template"]["metadata"]["labels"]
    pods = {"crossroads-gateway": gateway, "crossroads-rasa": rasa["podLabels"],
            "crossroads-actions": actions["podLabels"]}
    for budget in of_kind("PodDisruptionBudget"):
        labels = pods[budget["metadata"]["name"]]
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items(), budget["metadata"]["name"]


# -- the image and the pods' security ----------------------------------------------------------------
def test_the_pods_run_as_the_images_non_root_user_on_a_read_only_root():
    user = re.findall(r"^USER (\S+)\s*$", DOCKERFILE.read_text(encoding="utf-8"), re.MULTILINE)
    assert user and user[-1].isdigit() and user[-1] != "0", "a numeric non-root USER"
    pod = manifest("Deployment", "crossroads-gateway")["spec"]["template"]["spec"]
    contexts = [(pod["securityContext"], gateway_container()["securityContext"])]
    contexts += [(values(p)["podSecurityContext"], values(p)["securityContext"]) for p in (RASA_VALUES, ACTION_VALUES)]
    for pod_context, container_context in contexts:
        assert pod_context["runAsNonRoot"] is True and str(pod_context["runAsUser"]) == user[-1]
        assert container_context["readOnlyRootFilesystem"] is True
        assert container_context["allowPrivilegeEscalation"] is False
        assert container_context["capabilities"]["drop"] == ["ALL"]


def test_the_image_installs_the_lock_and_leaves_local_state_out():
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.10-slim\s*$", text, re.MULTILINE)
    assert re.search(r"pip install .*-r requirements\.lock", text)
    ignored = {line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()}
    assert {".env", ".venv", "var", "models", "reports/*/work", ".git"} <= ignored


def test_the_operator_doc_covers_the_files():
    text = DOC.read_text(encoding="utf-8")
    for needle in ("helm repo add rasa https://helm.rasa.com", "-f deploy/helm/rasa-values.yaml",
                   "-f deploy/helm/action-server-values.yaml", "kubectl apply", "deploy/k8s/gateway.yaml",
                   "deploy/Dockerfile", "crossroads/template!=true"):
        assert needle in text, needle
