"""Stage 3, `musicvae_retrain`: its parameters (the trigger form), its steps (snapshot, features,
train, register), the evaluation report, the promotion gate and the human approval, where the
training task runs, and the same steps in one process for `musicvae retrain`.

May import `core`, `model` and `registry`.
"""
