"""The API the operator serves: the CRDs' models, the CRDs generated from them, and every
name (group, kinds, labels, annotations, field managers, system namespaces) once.

May import: nothing else of the package (pydantic only).
"""
