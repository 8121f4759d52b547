#!/usr/bin/env bash
# Registers gVisor (Debian's `runsc`) as a Docker runtime named `runsc`, idempotently: installs
# the package if missing, adds the runtime to /etc/docker/daemon.json (keeping every other key),
# and asks dockerd to reload its configuration (SIGHUP; running containers are not touched).
# The ptrace platform works without KVM; --network=none is required in the root network namespace
# (../shared/FIELD-NOTES.md).
set -euo pipefail
if ! command -v runsc >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runsc >/dev/null
fi
if docker info --format '{{json .Runtimes}}' | grep -q '"runsc"'; then
  echo "runsc: already registered"
  exit 0
fi
config=/etc/docker/daemon.json
[ -f "$config" ] || echo '{}' > "$config"
python3 - "$config" "$(command -v runsc)" <<'PY'
import json, sys
path, runsc = sys.argv[1], sys.argv[2]
with open(path) as f:
    config = json.load(f)
config.setdefault("runtimes", {})["runsc"] = {"path": runsc, "runtimeArgs": ["--platform=ptrace", "--network=none"]}
with open(path + ".new", "w") as f:
    json.dump(config, f, indent=2)
import os
os.replace(path + ".new", path)
PY
kill -HUP "$(pidof dockerd)"
for _ in $(seq 1 50); do
  if docker info --format '{{json .Runtimes}}' | grep -q '"runsc"'; then
    echo "runsc: registered"
    exit 0
  fi
  sleep 0.2
done
echo "runsc: dockerd did not pick up the runtime" >&2
exit 1
