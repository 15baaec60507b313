"""Effects: pyo's C DSP as a rack inside the engine's block."""
