"""What listens: streaming pitch and beat trackers."""
