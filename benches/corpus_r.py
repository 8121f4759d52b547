#!/usr/bin/env python3
"""How many R files of the corpus of public solutions would load in the `r` runner image: every
package a file attaches (`library()`, `require()`, `pkg::`) must load inside the image (network
none, as a step runs).

    python3 benches/corpus_r.py IMAGE [--corpus corpus/r-solutions.tsv]

Prints each package that fails, the files that fail and why, and the figure (files whose
packages all load / files). Standard library only on the host; Docker must be running.
"""

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

INSIDE = r"""
packages <- strsplit(commandArgs(trailingOnly = TRUE)[1], " ")[[1]]
for (p in packages) {
  ok <- suppressWarnings(suppressMessages(requireNamespace(p, quietly = TRUE)))
  cat(p, if (ok) "ok" else "missing", "\n")
}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image")
    parser.add_argument("--corpus", default=str(Path(__file__).resolve().parent.parent / "corpus" / "r-solutions.tsv"))
    args = parser.parse_args()
    with open(args.corpus, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    packages = sorted({p for row in rows for p in row["packages"].split()})
    run = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", args.image, "Rscript", "-e", INSIDE, " ".join(packages)],
        capture_output=True, text=True, timeout=1800,
    )
    if run.returncode != 0:
        print(run.stderr, file=sys.stderr)
        return 1
    loads = {}
    for line in run.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 2:
            loads[fields[0]] = fields[1] == "ok"
    missing = sorted(p for p in packages if not loads.get(p, False))
    print(f"packages: {len(packages) - len(missing)} of {len(packages)} load; missing: {' '.join(missing)}")
    good = 0
    for row in rows:
        lacking = [p for p in row["packages"].split() if not loads.get(p, False)]
        if lacking:
            print(f"FAIL {row['repo']}/{row['path']}: {' '.join(lacking)}")
        else:
            good += 1
    print(json.dumps({"image": args.image, "files": len(rows), "load": good, "share": round(good / len(rows), 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
