"""The only code that talks to the API server: one transport (every failure, transport
errors and undecodable bodies included, becomes a ``core.errors`` type), resource
descriptors with generic verbs over them, and one narrow adapter per caller.

May import: ``core``, ``api``. Not ``engine``: the engine declares ports, ``runtime``
plugs these adapters into them.
"""
