"""Task signals: turning a batch's task information into vectors for the networks.

:mod:`gcrl.tasks.signals` holds the torch modules (one-hot, learned embedding, goal, text);
:mod:`gcrl.tasks.text` embeds instructions with sentence-transformers, with a disk cache.
"""
