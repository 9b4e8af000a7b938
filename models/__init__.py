"""Pure PyTorch meta-learning: datasets, episodes, networks and learners.

Nothing here imports the web service, the queue or the database.
"""
