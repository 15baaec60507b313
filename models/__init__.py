"""The learned parts: per model a folder of torch nets, data builders, training, weights and a card."""
