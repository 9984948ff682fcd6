#!/usr/bin/env bash
# Static checks of the deployment files: Prometheus config, rules and rule tests,
# Kubernetes kustomizations (base, overlays, optional components), the compose file
# and the Grafana dashboard. A check whose tool is not installed is skipped, not failed.
#
#   deploy/check.sh
#
# Tools: promtool (Debian: prometheus), kubectl or kustomize, python3 with PyYAML,
# check-jsonschema (PyPI) for the compose schema.
set -euo pipefail

cd "$(dirname "$0")/.."
failed=0
skipped=()

run() {
    echo "--- $*"
    if ! "$@"; then
        echo "FAILED: $*" >&2
        failed=1
    fi
}

have() { command -v "$1" > /dev/null 2>&1; }

if have promtool; then
    run promtool check config deploy/prometheus/prometheus.yml
    run promtool check rules deploy/prometheus/rules/*.yml
    run promtool test rules deploy/prometheus/tests/*.yml
else
    skipped+=(promtool)
fi

if have kustomize; then
    render() { kustomize build "$1" > /dev/null; }
elif have kubectl; then
    render() { kubectl kustomize "$1" > /dev/null; }
fi
if declare -F render > /dev/null; then
    for dir in k8s/base k8s/overlays/cpu k8s/overlays/gpu; do
        run render "$dir"
    done
    # Components only render inside a kustomization tree, so check them from a copy.
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    cp -r k8s "$tmp/k8s"
    mkdir -p "$tmp/k8s/overlays/all-components"
    cat > "$tmp/k8s/overlays/all-components/kustomization.yaml" <<'EOF'
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [../gpu]
components: [../../components/prometheus-operator, ../../components/keda]
EOF
    run render "$tmp/k8s/overlays/all-components"
else
    skipped+=(kustomize)
fi

if python3 -c "import yaml" 2> /dev/null; then
    run python3 - <<'EOF'
import json, re, sys
import yaml

ok = True
rules = yaml.safe_load(open("deploy/prometheus/rules/streamrank.rules.yml"))
crd = yaml.safe_load(open("k8s/components/prometheus-operator/prometheusrule.yaml"))
if crd["spec"] != rules:
    print("k8s/components/prometheus-operator/prometheusrule.yaml differs from "
          "deploy/prometheus/rules/streamrank.rules.yml")
    ok = False

for path in ["docker-compose.yml", "deploy/prometheus/prometheus.yml",
             "deploy/grafana/provisioning/datasources/prometheus.yml",
             "deploy/grafana/provisioning/dashboards/streamrank.yml"]:
    yaml.safe_load(open(path))

known = {"up", "kafka_consumergroup_lag", "streamrank_users", "streamrank_items",
         "streamrank_model_info"}
known |= {f"streamrank_{c}_total" for c in (
    "events", "items_encoded", "items_deleted", "recommendations", "dead_letters",
    "unencoded_item_events")}
for h in ("event_to_recommendation_seconds", "batch_processing_seconds", "batch_size",
          "encoder_batch_size", "encoder_batch_duration_seconds"):
    known |= {f"streamrank_{h}_{s}" for s in ("bucket", "sum", "count")}
known |= {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}

dash = json.load(open("deploy/grafana/dashboards/streamrank.json"))
exprs = [v["definition"] for v in dash["templating"]["list"] if v["type"] == "query"]
stack = list(dash["panels"])
while stack:
    panel = stack.pop()
    stack.extend(panel.get("panels", []))
    exprs.extend(t["expr"] for t in panel.get("targets", []))
for expr in exprs:
    for name in re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?=\{|\[)", expr):
        if name not in known:
            print(f"dashboard uses unknown metric {name!r}: {expr}")
            ok = False
sys.exit(0 if ok else 1)
EOF
else
    skipped+=(pyyaml)
fi

if have check-jsonschema; then
    run check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
else
    skipped+=(check-jsonschema)
fi

if [ ${#skipped[@]} -gt 0 ]; then
    echo "skipped (not installed): ${skipped[*]}"
fi
if [ "$failed" -ne 0 ]; then
    echo "deployment checks FAILED" >&2
    exit 1
fi
echo "deployment checks passed"
