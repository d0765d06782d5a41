"""Drivers' requests from the web, answered over the bus: every refusal says what to do."""

from __future__ import annotations

import structlog

from evplug import metrics
from evplug.contracts import evplug_pb2 as pb
from evplug.contracts import subjects
from evplug.contracts.wire import WireError, pack, unpack
from evplug.core.plug import InvalidTransition, Prompt
from evplug.mothership.actions import ActionRefused, DriverActions
from evplug.mothership.registry import PlugRegistry
from evplug.mothership.status import StatusPublisher

log = structlog.get_logger(__name__)

Code = pb.DriverReplyCode


class DriverRequests:
    def __init__(
        self, registry: PlugRegistry, actions: DriverActions, status: StatusPublisher
    ) -> None:
        self.registry = registry
        self.actions = actions
        self.status = status

    async def respond(self, subject: str, data: bytes) -> bytes:
        """The responder for ``driver.<site>``: a DriverRequest in, a DriverReply out."""
        try:
            request = unpack(data, pb.DriverRequest)
        except WireError as exc:
            metrics.MESSAGES_REJECTED.labels("DriverRequest").inc()
            return pack(pb.DriverReply(code=Code.DRIVER_REPLY_CODE_BAD_REQUEST, reason=str(exc)))
        reply = await self._answer(subjects.site_of(subject), request)
        reply.request_id = request.request_id
        if reply.code != Code.DRIVER_REPLY_CODE_OK:
            log.info(
                "driver.refused",
                plug_id=request.plug_id,
                prompt=request.prompt,
                code=Code.Name(reply.code),
                reason=reply.reason,
            )
        return pack(reply)

    async def _answer(self, site_id: str, request: pb.DriverRequest) -> pb.DriverReply:
        if not request.user_id:
            return _reply(Code.DRIVER_REPLY_CODE_BAD_REQUEST, "sign in first")
        try:
            prompt = Prompt(request.prompt)
        except ValueError:
            known = ", ".join(p.value for p in Prompt)
            return _reply(
                Code.DRIVER_REPLY_CODE_BAD_REQUEST, f"{request.prompt!r} is not one of: {known}"
            )
        plug = self.registry.plugs.get(request.plug_id)
        if plug is None or self.registry.site_of[plug.plug_id] != site_id:
            return _reply(
                Code.DRIVER_REPLY_CODE_UNKNOWN_PLUG,
                f"no plug {request.plug_id!r}: check the code on the socket",
            )
        try:
            await self.actions.choose(plug.plug_id, prompt, request.user_id)
        except ActionRefused as exc:
            return _reply(Code.DRIVER_REPLY_CODE_REFUSED, str(exc))
        except InvalidTransition:
            offered = ", ".join(plug.prompts) or "nothing"
            return _reply(
                Code.DRIVER_REPLY_CODE_REFUSED,
                f"{prompt} is not possible while the plug is {plug.state}; it offers {offered}",
            )
        reply = _reply(Code.DRIVER_REPLY_CODE_OK, "")
        reply.status.CopyFrom(await self.status.build(plug))
        return reply


def _reply(code: pb.DriverReplyCode.ValueType, reason: str) -> pb.DriverReply:
    return pb.DriverReply(code=code, reason=reason)
