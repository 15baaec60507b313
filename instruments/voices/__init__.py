"""What sounds: the synth, DDSP, vocoders, the harmonizer, SoundFont."""
