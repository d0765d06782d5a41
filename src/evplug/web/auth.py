"""Who is signed in. A placeholder: the one driver the app was configured with."""

from __future__ import annotations

from fastapi import Request


def current_user_id(request: Request) -> str:
    return str(request.app.state.driver_id)
