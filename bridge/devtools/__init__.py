"""Developer tools, run from a checkout of the repository, not part of the installed package.

``demo``     ``python -m bridge demo`` (``make demo``): a local Synapse, the bridge and a demo officer.
``wheelhouse`` ``make wheelhouse``: the wheels, Node packages and Debian package list of an offline install.
``localhs``  a real Synapse on loopback for the demo, the tests and the benchmarks; its settings template
             is the repository's ``config/demo-homeserver.yaml``.
``workers``  Synapse as production runs it (PostgreSQL, Redis, workers, nginx), for ``make test-workers``.
``offline_check``  ``make test-wheelhouse``: the air-gapped kit installed and run as an offline machine would.

The wheel leaves this package out (setup.cfg); nothing in the running bridge imports it.
"""
