"""``dualstack-operator plan``: what a policy would do to a namespace, before it exists.

May import: ``core``, ``api``.
"""
