#!/usr/bin/env python3
"""The peer of `takehome score`: pandas reads both files, joins them by id, scikit-learn scores.

    python3 benches/score_peer.py METRIC TRUTH PREDICTIONS
"""
import json
import sys

import pandas as pd
from sklearn import metrics

metric, truth_path, predictions_path = sys.argv[1:4]
truth = pd.read_csv(truth_path)
predictions = pd.read_csv(predictions_path)
joined = truth.merge(predictions, on="id", how="inner", validate="one_to_one", suffixes=("_true", "_pred"))
assert len(joined) == len(truth) == len(predictions)
y_true, y_pred = joined["label_true"], joined["label_pred"]
if metric == "f1_macro":
    value = metrics.f1_score(y_true, y_pred, average="macro", zero_division=0)
elif metric == "roc_auc":
    value = metrics.roc_auc_score(y_true == "yes", y_pred)
elif metric == "rmse":
    value = metrics.root_mean_squared_error(y_true, y_pred)
else:
    raise SystemExit(f"unknown metric {metric}")
print(json.dumps({"metric": metric, "value": float(value)}))
