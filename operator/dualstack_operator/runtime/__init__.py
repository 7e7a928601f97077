"""The running operator: settings with every default, ``build_components()`` (the same
wiring for the kopf app and the engine tests), the kopf handlers, the checks before
start, logging and the launch.

May import: every layer below it (``kube``, ``engine``, ``admission``, ``migration``,
``observability``, ``core``, ``api``); only ``cli`` imports it.
"""
