"""The engine: events, clock, node contract, graph, patches, safety, backends, control, shared DSP, CLI."""
