#!/usr/bin/env python3
"""Extract the third-party imports and IPython magics of Python solution files.

Standard library only. This is the method described in README.md ("How the
lists were extracted"), written down so that it can be re-run.

Usage
-----
    python3 extract_imports.py SELECTION.tsv [--mirror-root DIR] [--known TSV]

SELECTION.tsv has one line per file, tab-separated: ``repo`` (owner/name) and
``path`` (path inside the repository); lines starting with ``#`` and a header
line starting with ``repo`` are skipped. Each repository must be a snapshot
brought by ``fetch``, i.e. a bare git directory at
``DIR/<owner>+<name>/repo`` (or ``.../repo/.git``); DIR defaults to
``/work/.mirror``. The file is read with ``git show HEAD:<path>`` and the
repository's tree with ``git ls-tree -r HEAD``.

The result goes to stdout in the format of ``python-solutions.tsv``: header
``repo path commit kind imports magics``, one line per file, sorted by repo then
path, commit = the snapshot's HEAD commit.

``--known TSV`` (default: python-solutions.tsv next to this script) gives the
"well-known PyPI names": every module in its ``imports`` column, plus a short
built-in list. They matter for the local-module rule below.

A single file can also be examined without git:

    python3 extract_imports.py --file FILE [--tree TREE.txt]

where TREE.txt lists the repository's file paths, one a line.

Method
------
* Notebooks (.ipynb): the code cells are taken one at a time. A cell that
  parses with ``ast`` is used as is. Otherwise lines whose first non-blank
  character is ``%``, ``!`` or ``?`` (and lines ending in ``?``) are blanked
  and the cell is parsed again; if that fails too, only its lines starting
  with ``import``/``from`` are parsed one by one (a regex is the last resort).
  A cell starting with ``%%`` is a cell magic: for ``%%time``, ``%%timeit``,
  ``%%capture``, ``%%prun`` and ``%%memit`` the body is Python and is parsed;
  for any other cell magic (``%%bash``, ``%%writefile``, ``%%sql`` ...) the
  body is skipped.
* Scripts (.py): the whole file is parsed; if it does not parse (for example
  Python 2), the same per-line fallback is used.
* Every ``import x.y`` and ``from x.y import z`` anywhere in the file
  (including inside functions) gives the top-level name ``x``. Relative
  imports are skipped.
* Dropped: ``__future__``; standard-library modules
  (``sys.stdlib_module_names`` of the running python3); and the repository's
  own modules: a name that matches a ``.py`` file or a folder holding ``.py``
  files anywhere in the repository. A well-known PyPI name is dropped only
  when that local file or folder sits next to the importing file, in its
  parent folder, at the repository root or in a ``src/`` folder.
* Magics: in notebooks, a line whose first non-blank character is ``%`` or
  ``!`` in a cell that does not parse as plain Python; the label is the magic
  name (``%matplotlib``, ``%%timeit``) or ``!`` plus the first word of the
  shell command (``!pip``). In any file, ``get_ipython().run_line_magic('x',
  ...)`` / ``run_cell_magic`` / ``.system('cmd ...')`` calls count as ``%x``,
  ``%%x`` and ``!cmd``. Labels are deduplicated and sorted.
* Lists are sorted in plain code-point order (so ``IPython`` sorts first).
"""

import argparse
import ast
import json
import os
import posixpath
import re
import subprocess
import sys

STDLIB = set(sys.stdlib_module_names) | {"__future__"}

PY_CELL_MAGICS = {"time", "timeit", "capture", "prun", "memit"}

BUILTIN_KNOWN = {
    "numpy", "pandas", "sklearn", "scipy", "matplotlib", "seaborn", "xgboost",
    "lightgbm", "catboost", "torch", "torchvision", "tensorflow", "keras",
    "transformers", "datasets", "statsmodels", "plotly", "requests", "yaml",
    "joblib", "tqdm", "shap", "optuna", "mlflow", "nltk", "spacy", "utils",
    "config", "data", "model", "models", "features", "app", "src",
}

IMPORT_RE = re.compile(r"^\s*(?:from\s+([A-Za-z_][\w.]*)\s+import\b|import\s+(.+))")
MAGIC_CALL_RE = re.compile(
    r"get_ipython\(\)\s*\.\s*(run_line_magic|run_cell_magic|system)\(\s*(?:u|r)?['\"]([^'\"]*)['\"]")


# Namespace packages: their top-level name says nothing (protobuf installs `google`, which makes
# `import google` load where `google.colab` cannot), so two levels are kept.
NAMESPACES = {"google"}


def module_key(dotted):
    """The name recorded for a dotted module: its top level, or two levels in a namespace."""
    parts = dotted.split(".")
    return ".".join(parts[:2]) if parts[0] in NAMESPACES and len(parts) > 1 else parts[0]


def top_names_from_tree(tree):
    """Collect top-level names from an ast tree."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                names.append(module_key(a.name))
        elif isinstance(node, ast.ImportFrom):
            if node.level and node.level > 0:
                continue
            if node.module:
                names.append(module_key(node.module))
    return names


def names_from_lines(src):
    """Fallback: parse import lines one by one, then regex."""
    names = []
    for line in src.splitlines():
        s = line.strip()
        if not (s.startswith("import ") or s.startswith("from ")):
            continue
        s = s.split("#", 1)[0].rstrip().rstrip("\\").rstrip()
        if s.endswith("("):
            s = s[:-1] + " _x" if s.startswith("from ") else s[:-1]
        try:
            names.extend(top_names_from_tree(ast.parse(s)))
            continue
        except SyntaxError:
            pass
        m = IMPORT_RE.match(s)
        if not m:
            continue
        if m.group(1):
            if not m.group(1).startswith("."):
                names.append(module_key(m.group(1)))
        else:
            for part in m.group(2).split(","):
                part = part.strip().split(" as ")[0].strip()
                if part and not part.startswith("."):
                    names.append(module_key(part))
    return names


def parse_names(src):
    try:
        return top_names_from_tree(ast.parse(src)), True
    except (SyntaxError, ValueError):
        return names_from_lines(src), False


def magic_calls(src):
    labels = set()
    for kind, arg in MAGIC_CALL_RE.findall(src):
        word = arg.strip().split()[0] if arg.strip() else ""
        if not word:
            continue
        if kind == "run_line_magic":
            labels.add("%" + word)
        elif kind == "run_cell_magic":
            labels.add("%%" + word)
        else:
            labels.add("!" + word)
    return labels


def magic_label(stripped):
    if stripped.startswith("%%"):
        w = stripped[2:].split()
        return "%%" + w[0] if w else None
    if stripped.startswith("%"):
        w = stripped[1:].split()
        return "%" + w[0] if w else None
    if stripped.startswith("!"):
        w = stripped[1:].split()
        return "!" + w[0] if w else None
    return None


def notebook_cells(text):
    nb = json.loads(text)
    cells = nb.get("cells")
    if cells is None:  # nbformat 3
        cells = [c for ws in nb.get("worksheets", []) for c in ws.get("cells", [])]
    out = []
    for c in cells:
        if c.get("cell_type") != "code":
            continue
        src = c.get("source", c.get("input", ""))
        if isinstance(src, list):
            src = "".join(src)
        out.append(src)
    return out


def analyse_notebook(text):
    names, magics = [], set()
    for src in notebook_cells(text):
        magics |= magic_calls(src)
        first = src.lstrip()
        if first.startswith("%%"):
            lab = magic_label(first.splitlines()[0].strip())
            if lab:
                magics.add(lab)
            if lab and lab[2:] in PY_CELL_MAGICS:
                body = "\n".join(first.splitlines()[1:])
                names.extend(analyse_plain_cell(body, magics))
            continue
        names.extend(analyse_plain_cell(src, magics))
    return names, magics


def analyse_plain_cell(src, magics):
    try:
        return top_names_from_tree(ast.parse(src))
    except (SyntaxError, ValueError):
        pass
    kept = []
    for line in src.splitlines():
        s = line.strip()
        if s[:1] in ("%", "!"):
            lab = magic_label(s)
            if lab:
                magics.add(lab)
            kept.append("")
        elif s[:1] == "?" or (s.endswith("?") and not s.startswith("#")):
            kept.append("")
        else:
            kept.append(line)
    names, _ = parse_names("\n".join(kept))
    return names


def analyse_script(text):
    names, _ = parse_names(text)
    return names, magic_calls(text)


def local_index(tree_paths):
    """Map a top-level name to the folders where it exists as module/package."""
    index = {}
    py_dirs = set()
    for p in tree_paths:
        if p.endswith(".py"):
            d = posixpath.dirname(p)
            py_dirs.add(d)
            base = posixpath.basename(p)[:-3]
            index.setdefault(base, set()).add(d)
    for d in py_dirs:
        # every folder on the way to a .py file holds .py files below it
        parts = d.split("/") if d else []
        for i in range(len(parts)):
            name = parts[i]
            parent = "/".join(parts[:i])
            index.setdefault(name, set()).add(parent)
    return index


def is_local(name, file_path, index, known):
    where = index.get(name)
    if not where:
        return False
    if name not in known:
        return True
    here = posixpath.dirname(file_path)
    near = {here, posixpath.dirname(here), "", "src"}
    return any(w in near or w.endswith("/src") for w in where)


def third_party(names, file_path, index, known):
    out = set()
    for n in names:
        if not n or n in STDLIB or n == "__main__":
            continue
        if is_local(n, file_path, index, known):
            continue
        out.add(n)
    return sorted(out)


def analyse(text, path):
    if path.endswith(".ipynb"):
        return ("notebook",) + analyse_notebook(text)
    return ("script",) + analyse_script(text)


def git(gitdir, *args):
    return subprocess.run(["git", "-C", gitdir] + list(args), check=True,
                          capture_output=True).stdout


def find_gitdir(root, repo):
    base = os.path.join(root, repo.replace("/", "+"), "repo")
    dotgit = os.path.join(base, ".git")
    return dotgit if os.path.isdir(dotgit) else base


def load_known(path):
    known = set(BUILTIN_KNOWN)
    if path and os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            next(f, None)
            for line in f:
                cols = line.rstrip("\n").split("\t")
                if len(cols) >= 5:
                    known.update(cols[4].split())
    return known


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("selection", nargs="?")
    ap.add_argument("--mirror-root", default="/work/.mirror")
    ap.add_argument("--known", default=os.path.join(here, "python-solutions.tsv"))
    ap.add_argument("--file")
    ap.add_argument("--tree")
    a = ap.parse_args()
    known = load_known(a.known)

    if a.file:
        with open(a.file, encoding="utf-8", errors="replace") as f:
            text = f.read()
        tree = []
        if a.tree:
            with open(a.tree, encoding="utf-8") as f:
                tree = [l.strip() for l in f if l.strip()]
        kind, names, magics = analyse(text, a.file)
        print("\t".join([kind, " ".join(third_party(names, a.file, local_index(tree), known)),
                         " ".join(sorted(magics))]))
        return

    rows = []
    with open(a.selection, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#") or line.startswith("repo\t"):
                continue
            repo, path = line.split("\t")[:2]
            gitdir = find_gitdir(a.mirror_root, repo)
            commit = git(gitdir, "rev-parse", "HEAD").decode().strip()
            tree = git(gitdir, "ls-tree", "-r", "--name-only", "-z", "HEAD").decode().split("\0")
            text = git(gitdir, "show", "HEAD:" + path).decode("utf-8", errors="replace")
            kind, names, magics = analyse(text, path)
            imports = third_party(names, path, local_index([t for t in tree if t]), known)
            rows.append([repo, path, commit, kind, " ".join(imports), " ".join(sorted(magics))])
    rows.sort(key=lambda r: (r[0], r[1]))
    print("repo\tpath\tcommit\tkind\timports\tmagics")
    for r in rows:
        print("\t".join(r))


if __name__ == "__main__":
    main()
