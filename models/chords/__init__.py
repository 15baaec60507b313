"""The chord listener's learned classifier: weights, sha256 and card (trained by python -m bench.chords --train)."""
