"""Type stubs for shmring.connection: Pipe and Connection."""

from typing import Any, Optional, Tuple

__all__ = ["Pipe", "Connection"]

DEFAULT_CAPACITY: int
DEFAULT_MAX_MESSAGE_SIZE: int

class Connection:
    """One end of a ``Pipe``, as ``multiprocessing.connection.Connection``."""

    def send(self, obj: Any) -> None:
        """Sends a picklable object; ``BrokenPipeError`` if the peer is gone."""
    def recv(self) -> Any:
        """Receives an object; ``EOFError`` once the peer is gone."""
    def send_bytes(self, buf: Any, offset: int = 0, size: Optional[int] = None) -> None:
        """Sends the bytes of a bytes-like object as one message."""
    def recv_bytes(self, maxlength: Optional[int] = None) -> bytes:
        """Receives one message as bytes."""
    def recv_bytes_into(self, buf: Any, offset: int = 0) -> int:
        """Receives one message into a writable buffer; returns its length."""
    def poll(self, timeout: Optional[float] = 0.0) -> bool:
        """Whether a message (or EOF) is waiting, waiting up to ``timeout``."""
    def close(self) -> None:
        """Closes this end in this process."""
    def fileno(self) -> int:
        """Not available: raises ``OSError``."""
    @property
    def closed(self) -> bool:
        """Whether this handle is closed."""
    @property
    def readable(self) -> bool:
        """Whether this end can receive."""
    @property
    def writable(self) -> bool:
        """Whether this end can send."""
    def __enter__(self) -> "Connection": ...
    def __exit__(self, *exc: Any) -> None: ...

def Pipe(
    duplex: bool = True,
    *,
    max_message_size: Optional[int] = None,
    capacity: int = 64,
    spin: bool = False,
) -> Tuple[Connection, Connection]:
    """Two connected ``Connection`` objects, as ``multiprocessing.Pipe``."""
