"""Clean /data/raw/penguins_raw.csv into /output/penguins_clean.csv."""

import os

import pandas as pd

DATA = os.environ.get("DATA", "/data")
OUTPUT = os.environ.get("OUTPUT", "/output")


def main() -> None:
    raw = pd.read_csv(f"{DATA}/raw/penguins_raw.csv", dtype=str, keep_default_na=False)
    # TODO: clean every column. This only renames them.
    clean = pd.DataFrame(
        {
            "row_id": raw["row_id"],
            "species": raw["Species"],
            "island": raw["Island"],
            "bill_length_mm": raw["Culmen Length (mm)"],
            "bill_depth_mm": raw["Culmen Depth (mm)"],
            "flipper_length_mm": raw["Flipper Length (mm)"],
            "body_mass_g": raw["Body Mass (g)"],
            "sex": raw["Sex"],
            "year": raw["Date Egg"],
        }
    )
    clean.to_csv(f"{OUTPUT}/penguins_clean.csv", index=False)


if __name__ == "__main__":
    main()
