"""Library index: FAISS vectors + SQLite metadata, incremental indexing, search (see docs/index.md).

The Gradio app uses :class:`index.search.SearchEngine`; indexing is
:func:`index.build.build_library` / ``python -m index.build`` (progress events:
:mod:`index.progress`); library folders (counts, removal) are :mod:`index.roots` /
``python -m index.roots``. Submodules are imported
explicitly; importing the package loads nothing heavy.
"""
