"""Fits the seed-style model in the seed's virtualenv: a scikit-learn Pipeline around an
XGBRegressor, on the served wqi model's training rows and parameters, saved with joblib.

    seed-venv/bin/python train_seed.py DATA.npz PARAMS.json OUT.joblib
"""

import json
import sys

import joblib
import numpy as np
from sklearn.pipeline import Pipeline
from xgboost import XGBRegressor


def main():
    data_path, params_path, out_path = sys.argv[1:4]
    data = np.load(data_path)
    with open(params_path) as handle:
        params = json.load(handle)
    pipeline = Pipeline([("model", XGBRegressor(**params))])
    pipeline.fit(data["X_train"], data["y_train"])
    joblib.dump(pipeline, out_path)
    print(json.dumps({"train_rows": len(data["X_train"])}))


if __name__ == "__main__":
    main()
