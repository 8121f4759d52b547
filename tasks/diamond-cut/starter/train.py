"""Train a model on /data/public/train.csv and save it under /workspace."""

import os
import pickle

import pandas as pd

DATA = os.environ.get("DATA", "/data")
WORKSPACE = os.environ.get("WORKSPACE", "/workspace")


def main() -> None:
    train = pd.read_csv(f"{DATA}/public/train.csv")
    # TODO: build features and fit a real model. This one predicts the most common cut.
    most_common = train["cut"].mode()[0]
    with open(f"{WORKSPACE}/model.pkl", "wb") as handle:
        pickle.dump(most_common, handle)


if __name__ == "__main__":
    main()
