"""The credentials of the ``auth_server`` fixture: test-only secrets, never real ones.

``AUTH_PASSWORD`` is the default user's password (``requirepass``); ``ACL_USER`` /
``ACL_PASSWORD`` an ACL user limited to ``~*`` keys and every command but FLUSHALL.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ACL_PASSWORD", "ACL_USER", "AUTH_PASSWORD"]

AUTH_PASSWORD: Final = "s3cret-default-pw"
ACL_USER: Final = "kvuser"
ACL_PASSWORD: Final = "kv-user-pw-42"
