#!/usr/bin/env bash
# Offline build of the `python-slim` runner image's root file system (and, with another list, of
# `python`'s), for machines that reach the
# Debian and PyPI package archives but no container registry.
#
#   build-rootfs.sh OUT.tar
#
# Makes a minimal Debian bookworm with debootstrap, installs the pinned packages of
# requirements.txt into /opt/venv with pip, adds the user `runner` (uid 10001), and writes the
# tree as a tar that `takehome images build` imports (the equivalent of `docker import`).
# Needs root, debootstrap and network access to the two archives. The Debian mirror is the one
# this machine's apt already uses (or $TAKEHOME_DEBIAN_MIRROR).
set -euo pipefail

out=${1:?usage: build-rootfs.sh OUT.tar}
# The recipe built: this folder, or one that extends it (python) and names itself here.
script_dir=$(cd "$(dirname "$0")" && pwd)
here=${TAKEHOME_RECIPE_DIR:-$script_dir}
suite=bookworm

say() { printf 'build-rootfs: %s\n' "$*" >&2; }

command -v debootstrap >/dev/null || { say "debootstrap is not installed (apt-get install debootstrap)"; exit 2; }
[ "$(id -u)" = 0 ] || { say "must run as root (debootstrap and chroot)"; exit 2; }

mirror=${TAKEHOME_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  # The first plain Debian archive this machine's apt is configured with (deb822 or one-line form).
  mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ {print $2}' | grep -v -- '-security' | head -n1 || true)
  [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" {print $2}' /etc/apt/sources.list 2>/dev/null | grep -v -- '-security' | head -n1 || true)
fi
[ -n "$mirror" ] || { say "no Debian mirror found in apt's sources; set TAKEHOME_DEBIAN_MIRROR"; exit 2; }

root=$(mktemp -d /var/tmp/takehome-rootfs.XXXXXX)
cleanup() {
  for m in proc dev/pts dev sys; do umount -l "$root/$m" 2>/dev/null || true; done
  rm -rf --one-file-system "$root"
}
trap cleanup EXIT

say "step 1/4: debootstrap $suite (minbase) from the configured mirror"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,libgomp1,openjdk-17-jre-headless,graphviz \
  "$suite" "$root" "$mirror" >"$root.debootstrap.log" 2>&1 || {
  tail -n 30 "$root.debootstrap.log" >&2; rm -f "$root.debootstrap.log"; exit 1; }
rm -f "$root.debootstrap.log"

say "step 2/4: pip install the pinned packages into /opt/venv"
cp /etc/resolv.conf "$root/etc/resolv.conf"
mount -t proc proc "$root/proc"
cp "$here/requirements.txt" "$root/tmp/requirements.txt"
# Pure-Python packages published as source only (built here into wheels, their dependencies
# pinned in requirements.txt): the same list for python-slim and what extends it.
cp "$script_dir/sdist.txt" "$root/tmp/sdist.txt"
install -m 0755 "$script_dir/takehome-notebook" "$root/tmp/takehome-notebook"
# pip inside the chroot trusts what this machine trusts (a TLS-inspecting proxy's CA, for one).
host_ca=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
[ -f "$host_ca" ] && cp "$host_ca" "$root/tmp/host-ca.crt"
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
  ${PIP_INDEX_URL:+PIP_INDEX_URL=$PIP_INDEX_URL} PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 \
  $([ -f "$root/tmp/host-ca.crt" ] && echo PIP_CERT=/tmp/host-ca.crt) \
  chroot "$root" /bin/sh -c '
    set -e
    python3 -m venv /opt/venv
    /opt/venv/bin/pip install --no-cache-dir --only-binary=:all: -q -r /tmp/requirements.txt
    /opt/venv/bin/pip install --no-cache-dir --no-deps -q -r /tmp/sdist.txt
    /opt/venv/bin/python -c "import numpy, pandas, sklearn, scipy, pyarrow, matplotlib, xgboost, nbclient"
    /opt/venv/bin/ruff --version
    install -m 0755 /tmp/takehome-notebook /opt/venv/bin/takehome-notebook
    # What is installed, for `takehome images list` and the candidates ENVIRONMENT.md.
    mkdir -p /opt/takehome
    { echo "python $(/opt/venv/bin/python -c "import platform; print(platform.python_version())")"; /opt/venv/bin/pip list --format=freeze --disable-pip-version-check | sed "s/==/ /"; } >/opt/takehome/packages.txt
  ' >&2
umount -l "$root/proc"

say "step 3/4: add user runner (10001) and trim"
chroot "$root" /usr/sbin/useradd --uid 10001 --user-group --no-create-home --home-dir /tmp --shell /usr/sbin/nologin runner
rm -rf "$root/tmp/"* "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"* \
  "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/locale" "$root/root/.cache"
: >"$root/etc/resolv.conf"
mkdir -p "$root/submission" "$root/data" "$root/workspace" "$root/output"

say "step 4/4: write $out"
tar --numeric-owner --one-file-system -C "$root" -cf "$out.partial" .
mv "$out.partial" "$out"
say "done: $(du -h "$out" | cut -f1)"
