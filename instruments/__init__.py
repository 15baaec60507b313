"""What listens, plays and sounds: listeners, generators, voices and effects, each a node type."""
