"""Domain logic more than one daemon shares (ARCHITECTURE.md, "Layers").

No network, processes or event loop, and no import of another symphonyd package
(tests/test_layering.py). A module used by one daemon only lives in that daemon's package.
Where core touches the filesystem, it only reads metadata, never file contents, and writes
nothing:

- ``workspace_paths``: ``lstat``/``readlink`` walk (and ``getcwd`` for a relative path) to
  canonicalise a workspace path and check the root is a directory;
- ``config``: ``abspath`` (the current directory) to make ``workspace.root`` absolute;
- ``audit_layout``: lists an audit directory's day files (``scandir``), for the writer, the
  link's replicas and ``symphonyctl audit verify``.
"""
