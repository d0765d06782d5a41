"""What a relay says about its output: one vocabulary for the devices, the wire and the plug.

The members and their numbers are the wire contract's (``ActualState`` in
``contracts/evplug.proto``), so a number read off the wire maps straight to a member; a test
fails if the two ever disagree.
"""

from __future__ import annotations

from enum import IntEnum


class ActualState(IntEnum):
    UNKNOWN = 0
    ON = 1
    OFF = 2
    MIA = 3  # the relay manager cannot reach the device: no news, not "off"
    OVERCURRENT = 4  # the device's protection tripped: its output is off
