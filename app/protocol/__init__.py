"""The Live API's client messages, known once for the whole code base.

`messages` lists every client message type and field Vertex's `BidiGenerateContent` accepts;
`canonical` reads a parsed message against it into one spelling (camelCase), refusing what the
service refuses. The emulator validates against it strictly, as the service does; the relay
reads every client message that can carry configuration through it before its policy looks at
the message, so a rule is written once, against field names, never against the string a
client chose.
"""

from app.protocol.errors import ProtocolViolation, close_reason

__all__ = ["ProtocolViolation", "close_reason"]
