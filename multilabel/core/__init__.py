"""What crosses every boundary: the model directory's contract (`artifact`), errors, paths,
metric and strategy names. Standard library only: launch.py, train.py and the endpoint all import it.
"""
