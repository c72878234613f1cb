"""The IPC catalogue: one module per serving daemon, over the wire in ``core/wire.py``.

``shared`` holds what every API uses (``Empty``, ``health``, ``TokenTotals``); ``tracker``,
``dispatcher``, ``launcher`` and ``audit`` each hold the methods and events that daemon serves
(docs/design/0263-ipc-api-modules.md).
"""
