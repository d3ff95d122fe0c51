"""Training: dataset -> validated frame -> XGBoost -> evaluated, bundled, registered version."""
