"""The Gradio video search app (``python -m app``).

Modules: ``cli`` (command line), ``config`` (settings), ``launcher`` (create and
launch), ``ui`` (Blocks), ``api`` (named JSON endpoints), ``service`` (validated
operations), ``backend`` (what the app needs from a library), ``index_backend``
(that, on the ``index`` package), ``jobs`` (background indexing), ``security``
(paths, uploads, queries), ``render`` (HTML and gallery items), ``thumbnails``,
``errors`` (messages, never stack traces), ``demo_library`` (``--demo``).
Nothing outside ``app`` imports it.
"""
