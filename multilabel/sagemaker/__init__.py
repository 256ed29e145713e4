"""launch.py and the notebook: sessions and checks, the training job, the endpoint and Batch
Transform, the notebook's views. Never imports torch.
"""
