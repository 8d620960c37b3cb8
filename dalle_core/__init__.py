"""A laptop-sized DALL·E: discrete VAE, transformer and contrastive reranker."""
