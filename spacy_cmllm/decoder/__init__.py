"""The Hugging Face side: loading, unmasking, probing, adapters. Knows nothing of spaCy."""
