"""`tune`: hyperparameter search on the validation set with Optuna, each trial a normal fit run."""
