"""Types of the compiled ``mmsg`` module (bridge/dnsfront/mmsg.pyx; see its docstring): its
Batch has the interface of ``udpio.Datagrams`` (the same methods, arguments and results), so
it is typed as that, with the key memo's size on top."""

from .udpio import Datagrams

class Batch(Datagrams):
    def __init__(self, size: int, slot: int, keys: int = 0, key_max: int = 0) -> None: ...

__all__ = ["Batch"]
