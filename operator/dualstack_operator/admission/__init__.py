"""Services born compliant: the webhook (its pure mutation, its kopf server and its
configuration) and native admission (the CEL and tables compiled from the one decision,
kept in sync per namespace).

May import: ``core``, ``api``.
"""
