"""Knowledge bases' use cases: datasets (`datasets.py`); documents, indexing and retrieval come
with the rest of issue 22."""
