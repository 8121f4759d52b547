"""Predict the sex of the birds in /data/unsexed/penguins_raw.csv."""

import os

import pandas as pd

DATA = os.environ.get("DATA", "/data")
OUTPUT = os.environ.get("OUTPUT", "/output")


def main() -> None:
    raw = pd.read_csv(
        f"{DATA}/unsexed/penguins_raw.csv", dtype=str, keep_default_na=False
    )
    # TODO: clean these records as clean.py does, and predict with the trained model.
    predictions = pd.DataFrame({"row_id": raw["row_id"], "sex": "female"})
    predictions.drop_duplicates("row_id").to_csv(
        f"{OUTPUT}/predictions.csv", index=False
    )


if __name__ == "__main__":
    main()
