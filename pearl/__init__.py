"""PEARL: probabilistic context-based off-policy meta-reinforcement learning."""

__version__ = "0.1.0"
