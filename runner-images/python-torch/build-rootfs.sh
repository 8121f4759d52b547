#!/usr/bin/env bash
# Offline build of the `python-torch` runner image: the python image's build (see
# ../python/build-rootfs.sh) with this folder's requirements.txt, which is python's list plus
# torch and torchvision and what they need (NVIDIA's CUDA libraries from PyPI: the same image
# runs on the CPU, and on a GPU where the container is given one).
#
#   build-rootfs.sh OUT.tar
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
TAKEHOME_RECIPE_DIR="$here" exec bash "$here/../python/build-rootfs.sh" "$@"
