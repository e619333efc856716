"""Text to unit vectors: the local MiniLM model (the embedded default) or any
OpenAI-compatible `/embeddings` endpoint, behind one `Embedder` protocol."""
