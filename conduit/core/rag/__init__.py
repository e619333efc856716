"""Retrieval-augmented generation, free of HTTP and of the ORM session: turning a file into
text (`extract`), that text into clean segments (`clean`, `split`), segments into vectors
(`embed`), and — later — searching them. The dataset services and tasks drive these; nothing
here knows a dataset row."""
