"""Precinct: police non-emergency web chat bridged to end-to-end-encrypted Matrix rooms.

Layers, lowest first; each imports only from those before it (tests/unit/test_layers.py):
    utilities  background.py (wakeable loops), limits.py (token buckets), resources.py (descriptors, memory),
               metrics.py, private_files.py (owner-only files), client_address.py, client_input.py,
               text_lines.py (quoted lines no line break can forge)
    config.py (the one configuration schema), journal.py (the Journal everything records through)
    store/ → matrix/ → records/ → chats/ → appservice/, officers/, web/, webhooks/, reports/ → console/
    app.py (wiring: the whole graph built in one place) → devtools/ (demo, local Synapse; not in the wheel)
    → __main__.py (the command line)
"""

__version__ = "0.1.0"
