"""Retrieval's domain: chunking documents and the lexical (sparse) side of hybrid search."""
