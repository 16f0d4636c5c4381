"""Library index: FAISS vectors + SQLite metadata, incremental indexing, search (see docs/index.md).

The Gradio app uses :class:`index.search.SearchEngine`; indexing is
:func:`index.build.build_library` / ``python -m index.build``. Submodules are imported
explicitly; importing the package loads nothing heavy.
"""
