"""train.py's run: arguments, the encoder and its head, the Trainer, checkpoints, metrics
and thresholds, the output files, staging, and `--do_train False` scoring.
"""
