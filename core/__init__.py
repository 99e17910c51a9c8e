"""DeepShiva's inference engine: load a Hugging Face causal LM and generate, streamed or whole."""
