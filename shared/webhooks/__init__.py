"""Webhooks with the shop's partners (processors): signed, durable, retried, traceable.

- ``signing``: Standard Webhooks signatures, with secret rotation.
- ``registry``: who the partners are, where they listen, what data they receive.
- ``policy``: which endpoint addresses we may send to.
- ``outbound``: deliveries written in the business transaction and sent by a worker.
- ``inbound``: partners' signed callbacks, verified and recorded once.
"""
