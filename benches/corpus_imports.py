#!/usr/bin/env python3
"""How many files of the corpus of public solutions would load in a runner image: every
third-party module a file imports must import inside the image (network none, as a step runs).

    python3 benches/corpus_imports.py IMAGE [--corpus corpus/python-solutions.tsv] [--exclude-dl]
                                            [--extended EXTENDED_IMAGE]

Prints each module that fails with its error, the files that fail and why, and the figure
(files whose imports all load / files). --exclude-dl leaves out files that import a deep
learning framework (torch, tensorflow, keras, transformers, ...), which python-slim lacks and
python has. --extended takehome/python:TAG measures what a task on python-slim with
`extended_images: [python]` runs: a file that imports a module of runner-images/python/modules is
checked in that image, every other file in IMAGE. Standard library only on the host; Docker must be running.
"""

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

DEEP_LEARNING = {"torch", "torchvision", "tensorflow", "keras", "transformers", "sentence_transformers", "spacy", "ultralytics", "keybert", "faiss"}

INSIDE = r"""
import json, subprocess, sys
modules = json.loads(sys.argv[1])
result = {}
for module in modules:
    run = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=300)
    lines = run.stderr.strip().splitlines()
    result[module] = None if run.returncode == 0 else (lines[-1] if lines else f"exit {run.returncode}")
print(json.dumps(result))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image")
    parser.add_argument("--corpus", default=str(Path(__file__).resolve().parent.parent / "corpus" / "python-solutions.tsv"))
    parser.add_argument("--exclude-dl", action="store_true")
    parser.add_argument("--extended")
    args = parser.parse_args()
    with open(args.corpus, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    if args.exclude_dl:
        rows = [r for r in rows if not DEEP_LEARNING & set(r["imports"].split())]
    chooses = set()
    if args.extended:
        recipe = args.extended.split("/")[-1].split(":")[0]
        listed = (Path(__file__).resolve().parent.parent / "runner-images" / recipe / "modules").read_text()
        chooses = {line.split("#")[0].strip() for line in listed.splitlines()} - {""}

    def image_of(row):
        return args.extended if chooses & {m.split(".")[0] for m in row["imports"].split()} else args.image

    failed_in = {}
    for image in sorted({image_of(r) for r in rows}):
        modules = sorted({m for r in rows if image_of(r) == image for m in r["imports"].split()})
        run = subprocess.run(
            ["docker", "run", "--rm", "--network", "none", "--user", "10001:10001", image, "python", "-c", INSIDE, json.dumps(modules)],
            capture_output=True, text=True, check=False,
        )
        if run.returncode != 0:
            print(run.stderr, file=sys.stderr)
            return 1
        failed_in[image] = {m: e for m, e in json.loads(run.stdout.strip().splitlines()[-1]).items() if e}
        for module, error in sorted(failed_in[image].items()):
            print(f"module {module} ({image}): {error}")
    failed = {m for f in failed_in.values() for m in f}
    loading = 0
    for row in rows:
        missing = sorted(set(row["imports"].split()) & failed_in[image_of(row)].keys())
        if missing:
            print(f"file {row['repo']}/{row['path']} ({image_of(row)}): {' '.join(missing)}")
        else:
            loading += 1
    repos = len({r["repo"] for r in rows})
    modules = {m for r in rows for m in r["imports"].split()}
    label = f"{args.image} with {args.extended}" if args.extended else args.image
    print(f"{label}: {loading} of {len(rows)} files load ({100 * loading / len(rows):.1f} %), {len(modules) - len(failed)} of {len(modules)} modules, {repos} repositories")
    return 0


if __name__ == "__main__":
    sys.exit(main())
