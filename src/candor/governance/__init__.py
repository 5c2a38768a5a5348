"""Accountability in software: who may do what (policy), proof of what was done (ledger).

``principal`` names the caller, ``policy`` decides, ``ledger`` records in a hash chain and
``gate`` wraps :meth:`candor.service.Service.call` so that no door runs an operation without
a decision and an audit record.
"""
