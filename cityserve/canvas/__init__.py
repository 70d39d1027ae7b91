"""The designer's canvas: paint a label map in the browser and see the photo Triton renders from it.

``bridge`` talks to Triton (cityserve's gRPC client), ``app`` is the Starlette app (the page and the
HTTP API), ``static/`` the page itself; ``cityserve canvas`` (``cityserve.commands.canvas``) runs it
on uvicorn, with a server of its own or one given with ``--server``.
"""
