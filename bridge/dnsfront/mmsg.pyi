"""Types of the compiled ``mmsg`` module (bridge/dnsfront/mmsg.pyx; see its docstring): its
Batch has the interface of ``udpio.Datagrams`` (the same methods, arguments and results), so
it is typed as that."""

from .udpio import Datagrams as Batch

__all__ = ["Batch"]
