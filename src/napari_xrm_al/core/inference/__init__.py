"""Running the network on a volume: batched slice inference, streamed, tiled and chunk-parallel prediction, its outputs and per-slice summaries, encoder embeddings."""
