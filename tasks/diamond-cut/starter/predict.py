"""Predict the cut of each diamond in /data/features/test.csv.

Writes /output/predictions.csv with the columns id and cut.
"""

import os
import pickle

import pandas as pd

DATA = os.environ.get("DATA", "/data")
WORKSPACE = os.environ.get("WORKSPACE", "/workspace")
OUTPUT = os.environ.get("OUTPUT", "/output")


def main() -> None:
    test = pd.read_csv(f"{DATA}/features/test.csv")
    with open(f"{WORKSPACE}/model.pkl", "rb") as handle:
        most_common = pickle.load(handle)
    predictions = pd.DataFrame({"id": test["id"], "cut": most_common})
    predictions.to_csv(f"{OUTPUT}/predictions.csv", index=False)


if __name__ == "__main__":
    main()
