#!/usr/bin/env bash
# Offline build of the `r` runner image's root file system, for machines that reach the Debian
# package archive but no container registry.
#
#   build-rootfs.sh OUT.tar
#
# Makes a minimal Debian bookworm with debootstrap, installs R and the Debian packages listed in
# packages.in (no CRAN: the suite pins every version), checks that each R package loads and that
# lintr runs, writes /opt/takehome/packages.txt, adds the user `runner` (uid 10001), and writes
# the tree as a tar that `takehome images build` imports. Needs root, debootstrap and the Debian
# archive this machine's apt uses (or $TAKEHOME_DEBIAN_MIRROR).
set -euo pipefail

out=${1:?usage: build-rootfs.sh OUT.tar}
here=$(cd "$(dirname "$0")" && pwd)
suite=bookworm

say() { printf 'build-rootfs: %s\n' "$*" >&2; }

command -v debootstrap >/dev/null || { say "debootstrap is not installed (apt-get install debootstrap)"; exit 2; }
[ "$(id -u)" = 0 ] || { say "must run as root (debootstrap and chroot)"; exit 2; }

mirror=${TAKEHOME_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ {print $2}' | grep -v -- '-security' | head -n1 || true)
  [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" {print $2}' /etc/apt/sources.list 2>/dev/null | grep -v -- '-security' | head -n1 || true)
fi
[ -n "$mirror" ] || { say "no Debian mirror found in apt's sources; set TAKEHOME_DEBIAN_MIRROR"; exit 2; }

packages=$(sed 's/#.*//' "$here/packages.in" | tr -s ' \n' ' ')

root=$(mktemp -d /var/tmp/takehome-rootfs.XXXXXX)
cleanup() {
  for m in proc dev/pts dev sys; do umount -l "$root/$m" 2>/dev/null || true; done
  rm -rf --one-file-system "$root"
}
trap cleanup EXIT

say "step 1/4: debootstrap $suite (minbase) from the configured mirror"
debootstrap --variant=minbase --include=ca-certificates "$suite" "$root" "$mirror" >"$root.debootstrap.log" 2>&1 || {
  tail -n 30 "$root.debootstrap.log" >&2; rm -f "$root.debootstrap.log"; exit 1; }
rm -f "$root.debootstrap.log"

say "step 2/4: apt-get install R and $(echo "$packages" | wc -w) Debian packages"
cp /etc/resolv.conf "$root/etc/resolv.conf"
mount -t proc proc "$root/proc"
install -m 0644 "$here/list-packages.R" "$root/tmp/list-packages.R"
install -m 0755 "$here/takehome-rnotebook" "$root/usr/local/bin/takehome-rnotebook"
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 \
  chroot "$root" /bin/sh -c "
    set -e
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $packages >/dev/null
    # Every listed R package loads, and lintr lints.
    Rscript -e 'for (p in c(\"tidyverse\", \"data.table\", \"recipes\", \"ranger\", \"caret\", \"glmnet\", \"lintr\")) suppressPackageStartupMessages(library(p, character.only = TRUE))'
    printf 'x = 1\n' >/tmp/check.R
    Rscript -e 'l <- lintr::lint(\"/tmp/check.R\"); stopifnot(length(l) >= 1)'
    # R Markdown runs chunk by chunk, and a figure is drawn to PNG without a display.
    printf '# t\\n\\n\140\140\140{r}\\nplot(1:3)\\nprint(2)\\n\140\140\140\\n' >/tmp/check.Rmd
    cd /tmp && /usr/local/bin/takehome-rnotebook check.Rmd --save /tmp/check.ipynb >/dev/null
    grep -q image/png /tmp/check.ipynb
    mkdir -p /opt/takehome
    Rscript /tmp/list-packages.R >/opt/takehome/packages.txt
  " >&2
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
