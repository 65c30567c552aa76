"""How h11, an independent HTTP/1.1 parser, reads each request.

Reads a JSON list of requests (hex strings) on stdin; writes a JSON list
of verdicts: {"accepted": bool, "body": hex or null, "error": str or null}.
A request is accepted when h11 yields its head and the end of its body
from the bytes given (followed by the end of the input).
"""

import json
import sys

import h11


def verdict(raw: bytes) -> dict:
    connection = h11.Connection(h11.SERVER)
    try:
        connection.receive_data(raw)
        connection.receive_data(b"")
        body = b""
        got_request = False
        while True:
            event = connection.next_event()
            if isinstance(event, h11.Request):
                got_request = True
            elif isinstance(event, h11.Data):
                body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return {"accepted": got_request, "body": body.hex(), "error": None}
            elif event is h11.NEED_DATA or event is h11.PAUSED:
                return {"accepted": False, "body": None, "error": "incomplete"}
            elif isinstance(event, h11.ConnectionClosed):
                return {"accepted": False, "body": None, "error": "closed"}
    except h11.RemoteProtocolError as error:
        return {"accepted": False, "body": None, "error": str(error)}


requests = json.load(sys.stdin)
json.dump([verdict(bytes.fromhex(request)) for request in requests], sys.stdout)
