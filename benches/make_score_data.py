#!/usr/bin/env python3
"""Writes the 10-million-row truth and predictions files that score_10m.sh reads.

    python3 benches/make_score_data.py OUT_DIR [N_ROWS]

Needs numpy and pandas. Predictions are shuffled against the truth (rows match by id).
"""
import sys
from pathlib import Path

import numpy as np
import pandas as pd

out = Path(sys.argv[1])
n = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000_000
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(7)
ids = rng.permutation(np.arange(1_000_000, 1_000_000 + n))
shuffle = rng.permutation(n)

classes = np.array(["Fair", "Good", "Very Good", "Premium", "Ideal"])
truth = rng.integers(0, 5, n)
predicted = np.where(rng.random(n) < 0.7, truth, rng.integers(0, 5, n))
pd.DataFrame({"id": ids, "label": classes[truth]}).to_csv(out / "truth_labels.csv", index=False)
pd.DataFrame({"id": ids[shuffle], "label": classes[predicted[shuffle]]}).to_csv(out / "pred_labels.csv", index=False)

positive = rng.random(n) < 0.3
probability = np.clip(positive * 0.3 + rng.random(n) * 0.7, 0, 1).round(6)
pd.DataFrame({"id": ids, "label": np.where(positive, "yes", "no")}).to_csv(out / "truth_binary.csv", index=False)
pd.DataFrame({"id": ids[shuffle], "label": probability[shuffle]}).to_csv(out / "pred_proba.csv", index=False)

values = rng.normal(100, 20, n).round(4)
guess = (values + rng.normal(0, 5, n)).round(4)
pd.DataFrame({"id": ids, "label": values}).to_csv(out / "truth_values.csv", index=False)
pd.DataFrame({"id": ids[shuffle], "label": guess[shuffle]}).to_csv(out / "pred_values.csv", index=False)
print(f"wrote {n} rows per file to {out}")
