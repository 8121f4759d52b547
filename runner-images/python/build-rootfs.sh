#!/usr/bin/env bash
# Offline build of the `python` runner image, the default one: the python-slim image's build (see
# ../python-slim/build-rootfs.sh) with this folder's requirements.txt, which is python-slim's list
# plus the deep learning stack (torch and torchvision with NVIDIA's CUDA libraries from PyPI: the
# same image runs on the CPU, and on a GPU where the container is given one; tensorflow-cpu,
# transformers, sentence-transformers, spacy, faiss-cpu, keybert).
#
#   build-rootfs.sh OUT.tar
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
TAKEHOME_RECIPE_DIR="$here" exec bash "$here/../python-slim/build-rootfs.sh" "$@"
