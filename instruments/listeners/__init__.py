"""What listens: streaming pitch, beat, and chord and key trackers."""
