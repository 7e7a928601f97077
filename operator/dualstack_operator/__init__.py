"""dualstack-operator: one IP-family policy per namespace, every Service matching it."""

__version__ = "0.1.0"
