"""The pure rules: views of API objects, the decision per Service (also what a new one is
given at admission), planning, status, scope, ownership, endpoints, recreation, and the
typed API failures. No I/O, no asyncio, no clock but one passed in.

May import: ``api``.
"""
