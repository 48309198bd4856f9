"""Tests of fraudlab.train: the validation gate (the training run itself is proven by tests/test_fit_model_app.py)."""
