"""The reconciling engine: reflectors and the views they fill, the work queue on an
injected clock, the pass (``Reconciler``) returning a ``Result`` and its collaborators
(remediation, status, recreation, events), the write gate, the ledger and the
active/standby gate. It talks to the API server only through the ports in ``ports``.

May import: ``core``, ``api``.
"""
