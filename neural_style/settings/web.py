"""The live view's settings (WEB, WEB_PORT, WEB_HOST, WEB_EVERY), typed and checked.

Both train.py and train_network.py read them, beside their own settings:

    web = WebSettings.from_flag_values(flags.FLAGS)   # or WebSettings.from_module(settings)

No TensorFlow, no aiohttp: a bad value is one line before anything heavy loads.
"""

from __future__ import annotations

import ipaddress
import math
import types
from dataclasses import dataclass
from typing import Any

from neural_style.errors import UserError
from neural_style.settings import values


@dataclass(frozen=True)
class WebSettings:
    """Whether and where a run serves its live view; fields mirror settings.py's WEB_*."""

    web: bool  # serve the live view
    web_port: int  # TCP port, 0..65535; 0 = any free port
    web_host: str  # address to listen on; 127.0.0.1 = this machine only
    web_every: float  # seconds between two images sent to the page, > 0

    @classmethod
    def from_module(cls, module: types.ModuleType, **overrides: Any) -> WebSettings:
        """Every field's UPPER_CASE constant from `module`, `overrides` applied, checked."""
        return validate(cls(**values.module_values(cls, module, overrides)))

    @classmethod
    def from_flag_values(cls, flag_values: Any) -> WebSettings:
        """The checked WebSettings from parsed flags (see values.flag_field_values)."""
        return validate(cls(**values.flag_field_values(cls, flag_values)))

    @property
    def loopback(self) -> bool:
        """Only this machine can connect."""
        return is_loopback(self.web_host)


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only: `localhost`, any address of 127.0.0.0/8, or
    ::1 (also in brackets, or as an IPv4-mapped ::ffff:127.x.y.z)."""
    name = host.strip().removeprefix("[").removesuffix("]").lower()
    if name in ("localhost", "localhost."):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def validate(settings: WebSettings) -> WebSettings:
    """Checks every field; returns a copy with WEB_EVERY as a float.

    Raises:
      UserError: one line naming the first bad setting and how to fix it.
    """
    checked = values.checked_types(settings)
    describe = values.describe
    if not 0 <= checked.web_port <= 65535:
        raise UserError(
            f"{describe('web_port')} must be a port from 0 to 65535 (0 = any free port), "
            f"got {checked.web_port}"
        )
    if not (math.isfinite(checked.web_every) and checked.web_every > 0):
        raise UserError(
            f"{describe('web_every')} must be a number of seconds > 0, got {checked.web_every}"
        )
    if not checked.web_host.strip():
        raise UserError(
            f"{describe('web_host')} must be an address to listen on, e.g. 127.0.0.1; "
            "got an empty string"
        )
    return checked
