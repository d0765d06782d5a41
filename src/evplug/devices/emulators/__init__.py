"""HTTP servers that behave like real relays, a ``car.Socket`` behind every channel.

For tests (drivers against real HTTP) and for trying evplug without hardware
(``evplug emulate <model>``). ``MODELS`` lists what can be emulated.
"""

from evplug.devices.emulators.runner import (
    MODELS,
    RunningEmulator,
    run_emulator_forever,
    start_emulator,
)

__all__ = ["MODELS", "RunningEmulator", "run_emulator_forever", "start_emulator"]
