"""The queues area of shmring (see __init__.py)."""

__all__: list = []
