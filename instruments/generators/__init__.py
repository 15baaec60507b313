"""What plays by itself: learned generators (Piano Genie)."""
