# shellcheck shell=bash
# Offline checks of the Helm chart (charts/quire): helm lint, renders of the default, production
# and dev values, validation of every rendered object against the Kubernetes schemas, and the
# chart's invariants (scripts/chart/check_chart.py). Sourced by scripts/test.sh, which calls
# `chart_check`; usable by hand: `source scripts/lib/chart.sh && chart_check`.
#
# Needs no helm binary, no cluster and no network beyond PyPI: helm-python-sdk bundles Helm v4's
# Go SDK as a native library (the helm CLI's lint, values-schema validation and template engine;
# prebuilt wheels for Linux x86_64 among others), and kubernetes-validate ships the Kubernetes
# OpenAPI schemas. Both live in a virtualenv under ~/.cache/quire, made on the first run and
# reused while it holds the pinned versions.

CHART_HELM_PYTHON_SDK_VERSION=0.2.2
CHART_KUBERNETES_VALIDATE_VERSION=1.37.0
CHART_PYYAML_VERSION=6.0.3

chart_log() { printf '==> %s\n' "$*" >&2; }

chart_venv_dir() {
  echo "${QUIRE_CHART_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/quire/chart-venv}"
}

# Makes (or updates) the virtualenv so that it holds exactly the pinned versions.
chart_install() {
  local venv want have
  venv=$(chart_venv_dir)
  want="$CHART_HELM_PYTHON_SDK_VERSION $CHART_KUBERNETES_VALIDATE_VERSION $CHART_PYYAML_VERSION"
  have=$("$venv/bin/python" -c 'from importlib.metadata import version as v
print(v("helm-python-sdk"), v("kubernetes-validate"), v("PyYAML"))' 2>/dev/null || true)
  if [[ "$have" == "$want" ]]; then
    return 0
  fi
  chart_log "installing helm-python-sdk $CHART_HELM_PYTHON_SDK_VERSION and kubernetes-validate $CHART_KUBERNETES_VALIDATE_VERSION into $venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv" || { echo "python3 -m venv failed (Debian: apt-get install python3-venv)" >&2; return 1; }
  # --only-binary: the helm-python-sdk sdist would need Go and a C compiler; fail plainly instead.
  "$venv/bin/pip" install --quiet --disable-pip-version-check --only-binary helm-python-sdk \
    "helm-python-sdk==$CHART_HELM_PYTHON_SDK_VERSION" \
    "kubernetes-validate==$CHART_KUBERNETES_VALIDATE_VERSION" \
    "PyYAML==$CHART_PYYAML_VERSION" >&2
}

# Lints, renders and validates the chart; non-zero when any check fails.
chart_check() {
  chart_install || return 1
  local venv root
  venv=$(chart_venv_dir)
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  chart_log "chart: lint, render and validate charts/quire (Helm SDK via helm-python-sdk $CHART_HELM_PYTHON_SDK_VERSION, Kubernetes schemas via kubernetes-validate $CHART_KUBERNETES_VALIDATE_VERSION)"
  "$venv/bin/python" "$root/scripts/chart/check_chart.py"
}
