"""The HTTP collector: the seed's tracking API in front of `tracktor.raw`.

server.py (the event loop and routes), processes.py (several processes on one port),
wire.py (the HTTP/1.1 reader), calls.py (what a call means: parameters, signatures, the
raw envelope), static/tio.js (the JavaScript library it serves).
"""
