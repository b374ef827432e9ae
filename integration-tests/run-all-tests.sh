#!/usr/bin/env bash
# Runs every test of the workspace on a fresh machine of this kind.
# Installs what the build and the tests need, reusing what is already there:
#   - a C toolchain for librdkafka (built from source by rdkafka-sys);
#   - moto (the AWS API emulator) into .venv;
#   - Debian's chromium, which renders the dashboard in its test;
#   - Debian's docker-registry (a real OCI registry, started by the image
#     tests on free ports with their own config), skopeo (an independent
#     client that reads pushed images back), umoci (unpacks images for the
#     tests that run them with chroot) and ca-certificates (the images'
#     CA bundle).
# The Kafka-protocol broker is librdkafka's mock cluster, linked into the
# tests, so there is nothing else to start. See integration-tests/src/backend.rs
# for the other backends (containers, or endpoints from the environment).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

apt_install() {
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
  else
    echo "missing: $* (install them with apt-get)" >&2
    exit 1
  fi
}

command -v cc >/dev/null && command -v make >/dev/null || apt_install build-essential
command -v perl >/dev/null || apt_install perl
command -v chromium >/dev/null || apt_install --no-install-recommends chromium fonts-dejavu-core
# promtool checks the shipped Prometheus config and alert rules (ops/).
command -v promtool >/dev/null || apt_install --no-install-recommends prometheus
if ! command -v docker-registry >/dev/null || ! command -v skopeo >/dev/null \
  || ! command -v umoci >/dev/null || [ ! -f /etc/ssl/certs/ca-certificates.crt ]; then
  apt_install --no-install-recommends docker-registry skopeo umoci ca-certificates
fi

MOTO_VERSION="5.2.6"
if ! .venv/bin/python -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
  python3 -m venv .venv || { apt_install python3-venv && python3 -m venv .venv; }
  .venv/bin/pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
fi
export EVENT_PLATFORM_MOTO_SERVER="$root/.venv/bin/moto_server"

cargo test --workspace --locked "$@"
