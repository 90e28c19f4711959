"""The app on a real socket, as the `live_server` fixture starts it."""

from __future__ import annotations

from dataclasses import dataclass

import uvicorn


@dataclass
class LiveServer:
    url: str
    server: uvicorn.Server
